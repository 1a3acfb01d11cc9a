"""Two real `realtime` processes (uvicorn, config.asgi) sharing Redis: the two participants of a
call on different servers signal each other, and the call's states and events happen once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from chat.voice.models import Call, CallStatus
from tests import browser
from tests.chat.voice.conftest import SDP_EXAMPLE, events_of, mint

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers() -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [stack.enter_context(browser.web_server("realtime")) for _ in range(2)]


def receive(socket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(socket.recv(timeout=10))
    return frame


def test_participants_on_two_processes_signal_each_other(call, owner, member, servers):
    owner_id, member_id = str(owner.user.pk), str(member.user.pk)
    ws = [base.replace("http://", "ws://") for base in servers]
    path = f"/ws/voice/{call.pk}/"
    with connect(f"{ws[0]}{path}?ticket={mint(owner, call.pk)}", open_timeout=10) as first:
        assert receive(first)["state"] == "ringing"
        with connect(f"{ws[1]}{path}?ticket={mint(member, call.pk)}", open_timeout=10) as second:
            state = receive(second)
            assert state["state"] == "active" and state["you"] == member_id
            assert receive(first)["type"] == "joined"
            assert receive(first)["state"] == "active"
            second.send(json.dumps({"type": "offer", "to": owner_id, "sdp": SDP_EXAMPLE}))
            assert receive(first) == {"type": "offer", "from": member_id, "sdp": SDP_EXAMPLE}
            first.send(json.dumps({"type": "answer", "to": member_id, "sdp": SDP_EXAMPLE}))
            assert receive(second) == {"type": "answer", "from": owner_id, "sdp": SDP_EXAMPLE}
            first.send(json.dumps({"type": "hangup"}))
            for socket in (first, second):
                assert receive(socket)["state"] == "ended"
    stored = Call.objects.get(pk=call.pk)
    assert stored.status == CallStatus.ENDED and stored.duration_seconds is not None
    assert len(events_of("call.started", call.pk)) == 1
    assert len(events_of("call.ended", call.pk)) == 1
