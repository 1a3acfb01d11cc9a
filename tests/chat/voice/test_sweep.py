"""The sweep of abandoned calls: a call whose participants' processes all died (no disconnect ran)
is ended once, with call.ended; a call with a socket still pinging, or a fresh one, is not."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from channels.db import database_sync_to_async
from django.utils import timezone
from websockets.sync.client import connect

from chat.voice import services
from chat.voice.models import Call, CallParticipant, CallStatus
from chat.voice.sweep import sweep_abandoned
from core.runtime import processes
from tests import browser, live
from tests.chat.voice.conftest import events_of, joined, mint, run
from tests.processes import Process


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


def started(call: Call, owner: Any, member: Any) -> Call:
    services.participant_join(call_id=call.pk, user=owner.user, channel="gone-1")
    services.participant_join(call_id=call.pk, user=member.user, channel="gone-2")
    call.refresh_from_db()
    assert call.status == CallStatus.ACTIVE
    return call


def test_a_call_whose_sockets_were_not_seen_for_the_bound_is_ended_once(call, owner, member, settings):
    settings.VOICE_PARTICIPANT_TIMEOUT_SECONDS = 60
    started(call, owner, member)
    Call.objects.filter(pk=call.pk).update(created_at=ago(600), started_at=ago(600))
    CallParticipant.objects.filter(call=call).update(seen_at=ago(300))

    assert sweep_abandoned() == 1
    assert sweep_abandoned() == 0  # once
    call.refresh_from_db()
    assert call.status == CallStatus.ENDED
    assert 295 <= (call.duration_seconds or 0) <= 305  # until they were last seen alive
    (ended,) = events_of("call.ended", call.pk)
    assert ended["reason"] == "abandoned"
    assert not CallParticipant.objects.filter(call=call).exclude(channel="").exists()
    assert CallParticipant.objects.filter(call=call, left_at__isnull=True).count() == 0


def test_a_call_with_one_socket_still_alive_or_a_fresh_call_is_left_alone(call, owner, member, settings):
    settings.VOICE_PARTICIPANT_TIMEOUT_SECONDS = 60
    started(call, owner, member)
    Call.objects.filter(pk=call.pk).update(created_at=ago(600))
    CallParticipant.objects.filter(call=call, user=owner.user).update(seen_at=ago(300))
    fresh = services.call_create(org=owner.org, actor=owner.user, invitees=[])  # ringing, nobody yet
    old = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    Call.objects.filter(pk=old.pk).update(created_at=ago(600))  # rang for ten minutes, nobody came

    assert sweep_abandoned() == 1
    statuses = dict(Call.objects.values_list("pk", "status"))
    assert statuses == {call.pk: "active", fresh.pk: "ringing", old.pk: "ended"}
    assert events_of("call.ended", old.pk)[0]["duration_seconds"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_ping_keeps_a_participant_alive(call, owner, member, settings):
    settings.VOICE_PARTICIPANT_TIMEOUT_SECONDS = 60

    async def scenario() -> None:
        socket, _ = await joined(owner, call.pk)
        await _backdate(call.pk)
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=10) == {"type": "pong"}
        assert await _sweep() == 0  # seen just now
        await _backdate(call.pk)
        assert await _sweep() == 1  # no ping since
        assert (await socket.receive_json_from(timeout=10))["state"] == "ended"
        await socket.disconnect()

    run(scenario)


async def _backdate(call_id: Any) -> None:
    def backdate() -> None:
        Call.objects.filter(pk=call_id).update(created_at=ago(600))
        CallParticipant.objects.filter(call_id=call_id).update(seen_at=ago(300))

    await database_sync_to_async(backdate)()


async def _sweep() -> int:
    return int(await database_sync_to_async(sweep_abandoned)())


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_participants_whose_server_process_was_killed_are_swept(call, owner, member, settings):
    port = browser.free_port()
    env = live.process_env(STATIC_ROOT=str(browser.collected_static()), PORT=str(port))
    server = Process(processes.realtime(host="127.0.0.1", port=port), env, "realtime")
    try:
        live.wait_for(lambda: _up(port), timeout=60, what=f"the server; log:\n{server.output()}")
        path = f"ws://127.0.0.1:{port}/ws/voice/{call.pk}/"
        with (
            connect(f"{path}?ticket={mint(owner, call.pk)}", open_timeout=10),
            connect(f"{path}?ticket={mint(member, call.pk)}", open_timeout=10) as second,
        ):
            assert json.loads(second.recv(timeout=10))["state"] == "active"
            os.killpg(server.process.pid, signal.SIGKILL)  # no disconnect handler runs
            server.process.wait(timeout=10)
    finally:
        server.stop()
    call.refresh_from_db()
    assert call.status == CallStatus.ACTIVE  # and would stay so
    settings.VOICE_PARTICIPANT_TIMEOUT_SECONDS = 1
    time.sleep(1.2)
    assert sweep_abandoned() == 1
    call.refresh_from_db()
    assert call.status == CallStatus.ENDED
    assert [e["reason"] for e in events_of("call.ended", call.pk)] == ["abandoned"]


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2).status_code == 200
    except requests.RequestException:
        return False
