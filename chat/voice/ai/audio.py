"""What a voice session hears: binary frames of 16-bit PCM (16 kHz, mono, little-endian) or WebM
chunks (MediaRecorder's, told apart by the EBML magic), gathered into utterances that end on
silence (PCM, by RMS energy), at the client's word, or are refused past their bounds."""

from __future__ import annotations

import io
import math
import sys
import time
import wave
from array import array
from dataclasses import dataclass, field
from enum import StrEnum

EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # every WebM (Matroska) file starts with it
SAMPLE_RATE = 16_000
SAMPLE_BYTES = 2
WINDOW_SECONDS = 0.02  # energy is measured over 20 ms windows
WINDOW_BYTES = int(SAMPLE_RATE * WINDOW_SECONDS) * SAMPLE_BYTES


class Format(StrEnum):
    PCM = "pcm"
    WEBM = "webm"


@dataclass(frozen=True)
class Bounds:
    silence_seconds: float
    silence_rms: float
    max_seconds: float
    max_bytes: int


@dataclass
class Utterance:
    format: Format
    data: bytearray = field(default_factory=bytearray)
    started: float = field(default_factory=time.monotonic)
    overflowed: bool = False

    def upload(self) -> tuple[str, bytes, str]:
        """The file to send for transcription: name, bytes, content type (PCM wrapped in WAV)."""
        if self.format == Format.WEBM:
            return "utterance.webm", bytes(self.data), "audio/webm"
        return "utterance.wav", wav(bytes(self.data)), "audio/wav"


@dataclass(frozen=True)
class Heard:
    """What one frame did: had speech in it (or was WebM, which is not decoded here), ended the
    utterance on silence, pushed it past its bounds (first time only), or was refused (why)."""

    speech: bool = False
    ended: bool = False
    overflowed: bool = False
    refused: str = ""


def detect(chunk: bytes) -> Format:
    return Format.WEBM if chunk.startswith(EBML_MAGIC) else Format.PCM


def rms(window: bytes) -> float:
    """Root mean square of 16-bit little-endian samples (a trailing odd byte is ignored)."""
    samples = array("h")
    samples.frombytes(window[: len(window) - len(window) % SAMPLE_BYTES])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples))


def wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(SAMPLE_BYTES)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm[: len(pcm) - len(pcm) % SAMPLE_BYTES])
    return out.getvalue()


class Listener:
    """One socket's ear. PCM before any speech is dropped (no utterance of silence); after speech,
    AI_VOICE_SILENCE_SECONDS of quiet windows end the utterance. WebM is kept as sent: only the
    client's end_of_utterance (or a bound) ends it."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.utterance: Utterance | None = None
        self.heard_speech = False
        self.quiet = 0.0  # seconds of quiet windows since the last speech
        self.pending = b""  # PCM short of a whole window

    def feed(self, chunk: bytes) -> Heard:
        current = self.utterance
        if current is not None and current.format == Format.WEBM:
            return self._keep(current, chunk, speech=True)
        if detect(chunk) == Format.WEBM:
            if current is not None:
                return Heard(
                    refused="A WebM stream began inside a PCM utterance: send end_of_utterance first."
                )
            self.utterance = Utterance(Format.WEBM)
            return self._keep(self.utterance, chunk, speech=True)
        speech, ended = self._listen(chunk)
        if current is None:
            if not speech:
                return Heard()
            current = self.utterance = Utterance(Format.PCM)
        heard = self._keep(current, chunk, speech=speech)
        return Heard(speech=speech, ended=ended, overflowed=heard.overflowed)

    def take(self) -> Utterance | None:
        """The utterance so far (None if nothing was heard), and a fresh start."""
        utterance, self.utterance = self.utterance, None
        self.heard_speech, self.quiet, self.pending = False, 0.0, b""
        return utterance

    def _listen(self, chunk: bytes) -> tuple[bool, bool]:
        """Whether the chunk has speech, and whether it ends the utterance on silence."""
        data = self.pending + chunk
        whole = len(data) - len(data) % WINDOW_BYTES
        self.pending = data[whole:]
        speech = ended = False
        for start in range(0, whole, WINDOW_BYTES):
            if rms(data[start : start + WINDOW_BYTES]) >= self.bounds.silence_rms:
                speech, self.heard_speech, self.quiet, ended = True, True, 0.0, False
            elif self.heard_speech:
                self.quiet += WINDOW_SECONDS
                ended = ended or self.quiet >= self.bounds.silence_seconds
        return speech, ended

    def _keep(self, utterance: Utterance, chunk: bytes, *, speech: bool) -> Heard:
        if utterance.overflowed:
            return Heard(speech=speech)
        utterance.data += chunk
        if utterance.format == Format.PCM:
            seconds = len(utterance.data) / (SAMPLE_RATE * SAMPLE_BYTES)
        else:  # MediaRecorder sends as it records: the time since the first chunk is its length
            seconds = time.monotonic() - utterance.started
        if len(utterance.data) > self.bounds.max_bytes or seconds > self.bounds.max_seconds:
            # Dropped, but still listened to: it ends as any other would, and is not transcribed.
            utterance.overflowed = True
            utterance.data = bytearray()
            return Heard(speech=speech, overflowed=True)
        return Heard(speech=speech)
