"""A burst of 200 `/voice` webhooks and 200 stream opens within one second against a shop
that takes 20 calls at once (`BOBA_MAX_CALLS`, CONTRACT §2, §3): the 20 calls within the
cap are unaffected and place their orders, the other 180 hear the busy message (and their
streams, opened anyway, are closed before any agent is involved), and the server answers
`/healthz` throughout and takes calls again afterwards."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from boba_web.twilio_routes import BUSY
from tests.fakes.fake_agent import fake_agent_server
from tests.fakes.twilio_client import (
    answer_call,
    hang_up_after,
    open_twilio_stream,
)
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.faults.harness import (
    CALL_TIMEOUT,
    PUBLIC,
    Callers,
    Ledger,
    now,
    ordering_agent,
    orders_by_number,
    serve,
    shop_env,
)

pytestmark = pytest.mark.faults

MAX_CALLS = 20
BURST = 200
BURST_SECONDS = 1.0


async def test_burst_of_200_calls_busy_beyond_the_cap_and_healthy(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ledger = Ledger(hold=trio.Event())  # admitted calls order only once the burst is over
    admitted: list[str] = []
    busy: list[str] = []
    busy_closes: list[int | None] = []
    completed: list[str] = []
    health: list[int] = []
    webhooks_at: list[float] = []  # when each /voice request went out
    opens_at: list[float] = []  # when each stream's handshake began
    limits = httpx.Limits(max_connections=2 * BURST, max_keepalive_connections=2 * BURST)
    with FakeTwilioRest() as rest:
        async with (
            fake_agent_server(ordering_agent(ledger)) as agent,
            httpx.AsyncClient(timeout=60, limits=limits) as client,
        ):
            env = shop_env(database=f"sqlite:///{tmp_path / 'boba.sqlite3'}",
                           agent_url=agent.url, rest=rest, data_dir=tmp_path / "data",
                           extra={"BOBA_MAX_CALLS": str(MAX_CALLS)})
            async with serve(request, tmp_path / "run", env) as shop:
                url, token = shop.base_url, rest.auth_token
                burst_over = trio.Event()

                async def probe_health() -> None:
                    async with httpx.AsyncClient(timeout=30) as probe:
                        while not burst_over.is_set():
                            health.append((await probe.get(f"{url}/healthz")).status_code)
                            await trio.sleep(0.1)

                async def caller(i: int, refused_done: trio.MemorySendChannel[None]) -> None:
                    await trio.sleep(i * BURST_SECONDS / BURST)
                    sid, phone = "CA" + uuid.uuid4().hex, f"+1415556{i:04d}"
                    webhooks_at.append(now())
                    twiml = await answer_call(client, server_url=url, public_url=PUBLIC,
                                              auth_token=token, call_sid=sid, caller=phone)
                    stream_url = f"{PUBLIC.replace('https', 'wss')}/twilio"
                    if twiml.stream_url is None:  # busy: the stream opened anyway is refused
                        assert twiml.says == [BUSY] and twiml.hangup, twiml
                        busy.append(sid)
                        opens_at.append(now())
                        with trio.fail_after(CALL_TIMEOUT):
                            async with open_twilio_stream(
                                server_url=url, stream_url=stream_url, auth_token=token,
                                call_sid=sid, parameters={"caller": phone, "callSid": sid},
                            ) as stream:
                                await stream.send_connected()
                                with contextlib.suppress(trio_websocket.ConnectionClosed):
                                    await stream.send_start()
                                await stream.closed.wait()
                        busy_closes.append(stream.close_code)
                        async with refused_done:
                            return
                    admitted.append(sid)
                    async with refused_done:
                        pass
                    opens_at.append(now())
                    with trio.fail_after(CALL_TIMEOUT):
                        async with open_twilio_stream(
                            server_url=url, stream_url=twiml.stream_url, auth_token=token,
                            call_sid=sid, parameters=twiml.parameters,
                        ) as stream, trio.open_nursery() as audio:
                            await stream.send_connected()
                            await stream.send_start()
                            audio.start_soon(stream.stream_audio)
                            await stream.closed.wait()
                            audio.cancel_scope.cancel()
                        after = await hang_up_after(client, server_url=url, public_url=PUBLIC,
                                                    auth_token=token, call_sid=sid,
                                                    caller=phone)
                    assert after.says == [] and after.hangup, after
                    completed.append(sid)

                started = now()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(probe_health)
                    done_send, done_receive = trio.open_memory_channel[None](0)
                    async with done_send:
                        for i in range(BURST):
                            nursery.start_soon(caller, i, done_send.clone())
                    async for _ in done_receive:  # every webhook answered, busy streams shut
                        pass
                    burst_seconds = now() - started
                    burst_over.set()
                    ledger.hold.set()  # the admitted callers now order
                healthy_after = (await client.get(f"{url}/healthz")).status_code
                callers = Callers(client, rest)
                assert await callers.call(url) == "completed"  # the slots came back
                orders = await orders_by_number(client, url)

    assert len(admitted) == MAX_CALLS, len(admitted)
    assert len(busy) == BURST - MAX_CALLS
    assert sorted(completed) == sorted(admitted)
    assert busy_closes == [1008] * len(busy), busy_closes
    assert ledger.sessions == MAX_CALLS + 1  # no agent for a refused stream
    assert ledger.gave_up == ledger.cut_off == ledger.try_again == 0
    assert len(ledger.told) == MAX_CALLS + 1
    assert sorted(orders) == sorted(ledger.numbers())
    assert health and set(health) == {200}, health
    assert healthy_after == 200
    assert len(opens_at) == BURST
    print(f"\nFAULT burst: {BURST} webhooks sent within {max(webhooks_at) - started:.1f} s and "
          f"{BURST} stream opens within {max(opens_at) - started:.1f} s, all answered within "
          f"{burst_seconds:.1f} s, against BOBA_MAX_CALLS={MAX_CALLS}: {len(completed)} admitted "
          f"calls completed "
          f"their order, {len(busy)} heard the busy message and their streams were closed "
          f"(1008) with no agent; /healthz 200 on all {len(health)} probes during the burst "
          f"and after; one more call ordered afterwards")
