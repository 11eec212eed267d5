"""The HTTP control API over the real uvicorn server: MO injection, MT list, profiles, faults, counters,
load generator, trace, events, the phone page, the OpenAPI document, and every 4xx case."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from simulator import Simulator
from simulator.api import openapi_document
from smpp.aio import ESMESession
from smpp.constants import CommandStatus
from smpp.errors import NegativeResponseError
from smpp.pdu import DeliverSM, SubmitSM
from tests.integration.simulator.simharness import Inbox, esme_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def test_injected_mo_arrives_at_the_bound_client(simulator: Simulator, api: httpx.AsyncClient) -> None:
    inbox = Inbox()
    async with ESMESession(esme_config(simulator), inbox):
        response = await api.post(
            "/api/mo",
            json={
                "carrier": "movistar",
                "from": "612345678",
                "to": "997745",
                "text": "Hola desde la API",
                "encoding": "ucs2",
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["parts"] == 1 and response.json()["from"] == "34612345678"
        [pdu] = await inbox.wait_for(1)
    assert isinstance(pdu, DeliverSM)
    assert pdu.data_coding == 8 and pdu.short_message.decode("utf-16-be") == "Hola desde la API"


async def test_a_kept_alive_connection_is_answered_without_delayed_ack_stalls(simulator: Simulator) -> None:
    """Nagle's algorithm on the API's sockets held every response after the first on a connection
    until the client's delayed ACK: ~44 ms a request, 200 MOs in ~9 s."""
    assert simulator.control_url is not None
    body = {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": "hola"}
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=simulator.control_url, limits=one_connection) as client:
        started = time.perf_counter()
        for _ in range(200):
            assert (await client.post("/api/mo", json=body)).status_code == 202
        elapsed = time.perf_counter() - started
    assert simulator.carrier("movistar").counters.mo_injected == 200
    assert elapsed < 3.0, f"200 requests on one connection took {elapsed:.1f} s"


async def test_mt_list_filters_and_message_view(simulator: Simulator, api: httpx.AsyncClient) -> None:
    async with ESMESession(esme_config(simulator)) as session:
        for number in ("34600000001", "34600000002", "34600000001"):
            await session.submit(SubmitSM(source_addr="997745", destination_addr=number, short_message=b"hi"))
    listed = (await api.get("/api/mts", params={"destination": "34600000001"})).json()
    assert [mt["destinations"] for mt in listed["mts"]] == [["34600000001"], ["34600000001"]]
    first_id = listed["mts"][0]["id"]
    after = (await api.get("/api/mts", params={"since_id": first_id, "limit": 1})).json()["mts"]
    assert len(after) == 1 and after[0]["id"] == first_id + 1
    assert (await api.get("/api/mts", params={"carrier": "vodafone"})).json()["mts"] == []
    messages = (await api.get("/api/mts", params={"view": "messages"})).json()["messages"]
    assert [m["text"] for m in messages] == ["hi", "hi", "hi"]


async def test_profile_read_and_update(simulator: Simulator, api: httpx.AsyncClient) -> None:
    profile = (await api.get("/api/carriers/movistar")).json()
    assert profile["password"] == "********" and profile["short_codes"] == ["997745", "795500"]
    assert profile["port"] == simulator.port("movistar")
    updated = await api.patch(
        "/api/carriers/movistar",
        json={"message_id_format": "decimal", "receipts": {"statuses": {"UNDELIV": 1}}},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["receipts"]["statuses"] == {"UNDELIV": 1.0}
    async with ESMESession(esme_config(simulator)) as session:
        response = await session.submit(SubmitSM(source_addr="997745", destination_addr="34600000001"))
    assert getattr(response, "message_id", "").isdigit()


async def test_faults_set_read_and_clear(simulator: Simulator, api: httpx.AsyncClient) -> None:
    set_ = await api.post(
        "/api/carriers/movistar/faults",
        json={"generic_nack": True, "refuse_binds": {"status": "ESME_RBINDFAIL"}},
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["generic_nack"] is True
    assert set_.json()["refuse_binds"] == {"status": "ESME_RBINDFAIL"}
    with pytest.raises(NegativeResponseError) as refused:
        async with ESMESession(esme_config(simulator)):
            pass
    assert refused.value.status == CommandStatus.ESME_RBINDFAIL
    cleared = (await api.delete("/api/carriers/movistar/faults")).json()
    assert cleared["generic_nack"] is False and cleared["refuse_binds"] is None
    async with ESMESession(esme_config(simulator)) as session:
        assert session.bound


async def test_counters_and_reset(simulator: Simulator, api: httpx.AsyncClient) -> None:
    async with ESMESession(esme_config(simulator)) as session:
        await session.submit(SubmitSM(source_addr="997745", destination_addr="34600000001"))
    counters = (await api.get("/api/counters")).json()
    movistar = counters["carriers"]["movistar"]
    assert movistar["pdus_in"]["submit_sm"] == 1 and movistar["pdus_out"]["submit_sm_resp"] == 1
    assert movistar["binds_accepted"] == 1 and counters["mts_stored"] == 1
    reset = (await api.post("/api/reset")).json()
    assert reset["mts_stored"] == 0 and reset["carriers"]["movistar"]["pdus_in"] == {}
    assert (await api.get("/api/mts")).json()["mts"] == []


async def test_load_generator_makes_conversations(simulator: Simulator, api: httpx.AsyncClient) -> None:
    inbox = Inbox()

    async def answer(pdu: DeliverSM | object) -> int:
        assert isinstance(pdu, DeliverSM)
        await inbox(pdu)
        if not pdu.esm_class & 0x04:  # answer every MO, so the subscriber may reply
            session.submit_nowait(
                SubmitSM(
                    source_addr=pdu.destination_addr,
                    destination_addr=pdu.source_addr,
                    short_message=b"Hola guapo",
                ),
                lambda outcome: None,
            )
        return 0

    async with ESMESession(esme_config(simulator), answer) as session:
        started = await api.post(
            "/api/load",
            json={
                "carrier": "movistar",
                "subscribers": 5,
                "rate": 200,
                "reply_probability": 1.0,
                "reply_delay": {"low": 0, "high": 0.01},
                "seed": 3,
            },
        )
        assert started.status_code == 201, started.text
        await eventually(lambda: simulator.loads["movistar"].replies_sent >= 3)
        status = (await api.get("/api/load")).json()["generators"]
        assert status[0]["carrier"] == "movistar" and status[0]["sent"] >= 3
        stopped = (await api.delete("/api/load")).json()["stopped"]
        assert stopped[0]["running"] is False
    senders = {pdu.source_addr for pdu in inbox.pdus}
    assert len(senders) <= 5 and all(s.startswith("346") or s.startswith("347") for s in senders)


async def test_trace_writes_decoded_pdus(tracing_simulator: Simulator, trace_dir: Path) -> None:
    simulator = tracing_simulator
    path = trace_dir / "trace.jsonl"
    async with httpx.AsyncClient(base_url=simulator.control_url or "") as api:
        started = await api.put("/api/trace", json={"name": "trace.jsonl"})
        assert started.json() == {"path": str(path), "lines": 0}
        async with ESMESession(esme_config(simulator)) as session:
            await session.submit(
                SubmitSM(
                    source_addr="997745",
                    destination_addr="34600000001",
                    short_message="Olá".encode("latin-1"),
                    data_coding=3,
                )
            )
        assert (await api.put("/api/trace", json={"name": None})).json()["path"] is None
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    submits = [line for line in lines if line["command"] == "submit_sm"]
    assert submits and submits[0]["text"] == "Olá" and submits[0]["dir"] == "in"
    assert any(line["command"] == "submit_sm_resp" and line["dir"] == "out" for line in lines)
    assert any(line.get("password") == "********" for line in lines)


async def test_events_stream_shows_a_phone_conversation(simulator: Simulator, api: httpx.AsyncClient) -> None:
    events: list[tuple[str, dict[str, object]]] = []

    async def listen() -> None:
        query = {"carrier": "movistar", "msisdn": "600111222"}
        async with api.stream("GET", "/api/events", params=query) as r:
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))

    listener = asyncio.create_task(listen())
    try:
        await eventually(lambda: simulator.hub.listening)
        simulator.inject_mo("movistar", "34600111222", "997745", "Hola")
        simulator.inject_mo("movistar", "34600999999", "997745", "otro número")  # filtered out
        async with ESMESession(esme_config(simulator)) as session:
            await session.submit(
                SubmitSM(source_addr="997745", destination_addr="34600111222", short_message=b"Hola, soy Ana")
            )
        await eventually(lambda: len(conversation(events)) >= 2)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert conversation(events) == [("mo", "Hola"), ("mt", "Hola, soy Ana")]


async def test_a_phone_that_leaves_the_event_stream_leaves_no_waiting_task(
    simulator: Simulator, api: httpx.AsyncClient
) -> None:
    """The browser closing its event stream cancels the response while it waits for the next event:
    the wait for the event goes with it (a task left pending is destroyed later, logged as an error)."""

    def event_waits() -> list[asyncio.Task[object]]:
        return [task for task in asyncio.all_tasks() if "Queue.get" in repr(task.get_coro())]

    async with api.stream("GET", "/api/events") as response:
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"
        await eventually(lambda: len(event_waits()) == 1)
    await eventually(lambda: not simulator.hub.listening)
    await eventually(lambda: not event_waits())


def conversation(events: list[tuple[str, dict[str, object]]]) -> list[tuple[str, object]]:
    return [(kind, data["text"]) for kind, data in events if kind in ("mo", "mt")]


async def test_phone_page_and_openapi_are_served(api: httpx.AsyncClient) -> None:
    page = await api.get("/phone")
    assert page.status_code == 200 and "EventSource" in page.text and "/api/mo" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained, no CDN
    document = (await api.get("/openapi.json")).json()
    assert document == openapi_document()
    app_paths = {
        "/api/status",
        "/api/carriers",
        "/api/carriers/{name}",
        "/api/carriers/{name}/faults",
        "/api/faults",
        "/api/mo",
        "/api/mts",
        "/api/counters",
        "/api/reset",
        "/api/load",
        "/api/trace",
        "/api/events",
        "/phone",
        "/openapi.json",
    }
    assert set(document["paths"]) == app_paths


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/api/mo",
            {"carrier": "orange", "from": "34600111222", "to": "997745", "text": "x"},
            404,
            "unknown carrier 'orange'",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "12345", "to": "997745", "text": "x"},
            400,
            "invalid MSISDN '12345' for country ES",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": ""},
            400,
            "text: must not be empty",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": "a" * 400, "max_parts": 2},
            400,
            "needs 3 parts, at most 2",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": "a" * 40000},
            400,
            "text: too long",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": 5},
            400,
            "text: must be a string",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": "😊", "encoding": "gsm7"},
            400,
            "GSM-7 cannot carry",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "12", "text": "x"},
            400,
            "'12' is not a short code of movistar",
        ),
        (
            "POST",
            "/api/mo",
            {"carrier": "movistar", "from": "34600111222", "to": "997745", "text": "x", "colour": "red"},
            400,
            "colour: unknown key",
        ),
        ("POST", "/api/mo", b"{not json", 400, "not valid JSON"),
        ("POST", "/api/mo", [1, 2], 400, "expected a JSON object"),
        (
            "POST",
            "/api/carriers/movistar/faults",
            {"slow": {"seconds": "soon"}},
            400,
            "slow.seconds: must be a number, not 'soon'",
        ),
        ("POST", "/api/carriers/movistar/faults", {"throttle": True}, 400, "has no tps in its profile"),
        (
            "POST",
            "/api/carriers/movistar/faults",
            {"refuse_binds": {"status": "ESME_NOPE"}},
            400,
            "unknown command_status",
        ),
        ("POST", "/api/carriers/nowhere/faults", {}, 404, "unknown carrier 'nowhere'"),
        ("PATCH", "/api/carriers/movistar", {"port": 1}, 400, "port: cannot change while the simulator runs"),
        (
            "PATCH",
            "/api/carriers/movistar",
            {"receipts": {"statuses": {"LOST": 1}}},
            400,
            "receipts.statuses.LOST: must be one of 'DELIVRD', 'UNDELIV',",
        ),
        ("PATCH", "/api/carriers/movistar", {"max_binds": 0}, 400, "max_binds: must be at least 1"),
        ("POST", "/api/load", {"carrier": "movistar", "rate": -1}, 400, "rate: must be at least 0, not -1"),
        ("GET", "/api/mts?limit=0", None, 400, "limit: must be at least 1, not '0'"),
        ("GET", "/api/mts?since_id=abc", None, 400, "since_id: must be an integer, not 'abc'"),
        ("GET", "/api/mts?carrier=orange", None, 404, "unknown carrier"),
        ("PUT", "/api/trace", {"name": 3}, 400, "name: must be a string"),
        ("PUT", "/api/trace", {"path": "/tmp/x.jsonl"}, 400, "path: unknown key"),
        ("PATCH", "/api/carriers/movistar", b'{"tps": NaN}', 400, "body: NaN is not valid JSON"),
        ("PATCH", "/api/carriers/movistar", b'{"tps": -Infinity}', 400, "body: -Infinity is not valid JSON"),
        ("PATCH", "/api/carriers/movistar", b'{"tps": 1e400}', 400, "1e400 is beyond the range of a double"),
        ("PATCH", "/api/carriers/movistar", b'{"tps": ' + b"9" * 4300 + b"}", 400, "integer of 4300 digits"),
        ("POST", "/api/mo", b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested deeper than 32"),
        ("POST", "/api/mo", b'{"text": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested deeper than 32"),
        ("POST", "/api/load", b'{"carrier": "movistar", "seed": 1' + b"0" * 25 + b"}", 400, "26 digits"),
        (
            "PATCH",
            "/api/carriers/movistar",
            {"receipts": {"delay": {"seconds": 1e300}}},
            400,
            "receipts.delay.seconds: must be at most 2592000, not 1e+300",
        ),
        ("POST", "/api/mo", b"{}" + b" " * (1 << 20), 413, "body: more than 1,048,576 bytes"),
        ("GET", "/api/mts?since=nan", None, 400, "since: must be a finite number, not 'nan'"),
        ("GET", "/api/mts?since=1e999", None, 400, "since: must be a finite number, not '1e999'"),
        ("GET", "/api/nothing", None, 404, "Not Found"),
        ("DELETE", "/api/mo", None, 405, "Method Not Allowed"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(
    api: httpx.AsyncClient, method: str, path: str, body: object, status: int, message: str
) -> None:
    if isinstance(body, bytes):
        response = await api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    elif body is None:
        response = await api.request(method, path)
    else:
        response = await api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
