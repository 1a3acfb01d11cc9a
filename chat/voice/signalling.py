"""The shape of the signalling frames a client sends (`offer`, `answer`, `ice-candidate`) and a
per-socket rate limit on them: what is relayed is checked and bounded first."""

from __future__ import annotations

import re
import time
from typing import Any

MAX_SDP = 12_000
MAX_CANDIDATE = 2_000
MAX_MID = 64
MAX_UFRAG = 256
ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SIGNALS = frozenset({"offer", "answer", "ice-candidate"})


class BadSignal(Exception):
    """A frame that is not relayed; the message says what is wrong."""


def clean(kind: str, content: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The frame's addressee (None: everyone else in the call) and what is relayed of it."""
    to = content.get("to")
    if to is not None and (not isinstance(to, str) or not ID_RE.fullmatch(to)):
        raise BadSignal("`to`: a participant's id, or absent to send to everyone else.")
    if kind == "ice-candidate":
        return to, {"candidate": _candidate(content.get("candidate"))}
    sdp = content.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > MAX_SDP or "\x00" in sdp:
        raise BadSignal(f"`sdp`: a session description (starting v=0) of at most {MAX_SDP} characters.")
    return to, {"sdp": sdp}


def _candidate(value: Any) -> dict[str, Any]:
    """An RTCIceCandidateInit: `candidate` ("" ends the candidates), sdpMid, sdpMLineIndex,
    usernameFragment; nothing else is relayed."""
    if not isinstance(value, dict):
        raise BadSignal("`candidate`: an object {candidate, sdpMid, sdpMLineIndex, usernameFragment}.")
    text, mid = value.get("candidate"), value.get("sdpMid")
    index, ufrag = value.get("sdpMLineIndex"), value.get("usernameFragment")
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE or (text and not text.startswith("candidate:")):
        raise BadSignal(
            f'`candidate.candidate`: "candidate:..." of at most {MAX_CANDIDATE} characters, or "".'
        )
    if mid is not None and (not isinstance(mid, str) or len(mid) > MAX_MID):
        raise BadSignal(f"`candidate.sdpMid`: a string of at most {MAX_MID} characters, or null.")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 256):
        raise BadSignal("`candidate.sdpMLineIndex`: an integer 0-255, or null.")
    if ufrag is not None and (not isinstance(ufrag, str) or len(ufrag) > MAX_UFRAG):
        raise BadSignal(f"`candidate.usernameFragment`: a string of at most {MAX_UFRAG} characters, or null.")
    if "\x00" in text or (mid and "\x00" in mid) or (ufrag and "\x00" in ufrag):
        raise BadSignal("`candidate`: no NUL characters.")
    return {"candidate": text, "sdpMid": mid, "sdpMLineIndex": index, "usernameFragment": ufrag}


class TokenBucket:
    """In memory, per socket: `rate` frames a second, bursts of up to `rate`."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
