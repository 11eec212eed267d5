"""The control API against hostile input and other sites: strict JSON bodies (never a 500, nothing
stored), Content-Type, Host (DNS rebinding), Origin (cross-site pages) and trace files confined to the
trace directory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from simulator import Simulator
from simulator.api import create_app, openapi_document
from simulator.trace import TRACE_NAME
from smpp.aio import ESMESession
from smpp.constants import CommandStatus
from smpp.pdu import SubmitSM
from tests.integration.simulator.simharness import esme_config, make_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

#: A valid body of every endpoint that takes one, with a value at each key the endpoint reads.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/carriers/movistar"): {
        "tps": 50,
        "max_binds": 4,
        "deliver_window": 10,
        "queue_size": 100,
        "message_id_format": "hex",
        "short_codes": ["997745"],
        "receipts": {
            "enabled": True,
            "delay": {"kind": "uniform", "seconds": 1, "low": 0.5, "high": 1, "mean": 1},
            "statuses": {"DELIVRD": 1},
            "overrides": {"34699999999": "UNDELIV"},
        },
        "redelivery": {"initial": 1, "maximum": 2, "window": 60, "max_attempts": 3},
    },
    ("POST", "/api/carriers/movistar/faults"): {
        "throttle": {"tps": 5},
        "msgqful": {"count": 1, "seconds": 1},
        "slow": {"seconds": 0.1},
        "drop": {"after_pdus": 5},
        "refuse_binds": {"status": 13},
        "generic_nack": False,
    },
    ("POST", "/api/mo"): {
        "carrier": "movistar",
        "from": "34600111222",
        "to": "997745",
        "text": "hola",
        "max_parts": 2,
    },
    ("POST", "/api/load"): {
        "carrier": "movistar",
        "subscribers": 5,
        "rate": 1,
        "reply_probability": 0.5,
        "reply_delay": {"low": 1, "high": 2},
        "seed": 3,
    },
    ("PUT", "/api/trace"): {"name": "x.jsonl"},
}

#: JSON texts that no setting accepts: not JSON at all (NaN, Infinity), out of every range, too deep.
HOSTILE = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "9" * 4300,
    "-" + "9" * 5000,
    "1" + "0" * 25,
    "[" * 5000 + "]" * 5000,
    "[" * 40 + "]" * 40,
    '{"a": ' * 40 + "1" + "}" * 40,
)
_MARK = "\x00hostile\x00"


def entries(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def leaf_paths(value: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    else:
        yield path


def with_raw_value(body: dict[str, Any], path: tuple[str, ...], raw: str) -> bytes:
    """``body`` as JSON text with the value at ``path`` replaced by the raw JSON text ``raw``."""
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = _MARK
    return json.dumps(copy).replace(json.dumps(_MARK), raw).encode()


def hostile_requests() -> Iterator[tuple[str, str, str, bytes]]:
    """(label, method, url, body) with each hostile value at each key of each endpoint's body."""
    for (method, url), body in VALID_BODIES.items():
        for path in leaf_paths(body):
            for raw in HOSTILE:
                label = f"{method} {url} {'.'.join(path)}={raw[:12]}"
                yield label, method, url, with_raw_value(body, path, raw)


@pytest.fixture
async def trace_api(tracing_simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    assert tracing_simulator.control_url is not None
    async with httpx.AsyncClient(base_url=tracing_simulator.control_url, timeout=10.0) as client:
        yield client


async def profiles(api: httpx.AsyncClient) -> Any:
    response = await api.get("/api/carriers")
    assert response.status_code == 200, response.text
    return response.json()


async def test_hostile_values_anywhere_in_any_body_are_a_4xx_and_change_nothing(
    simulator: Simulator, api: httpx.AsyncClient
) -> None:
    before = await profiles(api)
    faults_before = (await api.get("/api/carriers/movistar/faults")).json()
    refused = 0
    for label, method, url, body in hostile_requests():
        response = await api.request(method, url, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (label, response.status_code, response.text)
        assert response.json()["error"], label
        refused += 1
    assert refused > 300
    assert await profiles(api) == before
    assert (await api.get("/api/carriers/movistar/faults")).json() == faults_before
    assert (await api.get("/api/load")).json() == {"generators": []}
    assert simulator.carrier("movistar").counters.mo_injected == 0 and simulator.tracer is None
    async with ESMESession(esme_config(simulator)) as session:
        response = await session.submit(SubmitSM(source_addr="997745", destination_addr="34600000001"))
    assert response.command_status == CommandStatus.ESME_ROK


async def test_a_nan_tps_is_refused_and_the_carrier_keeps_serving(
    simulator: Simulator, api: httpx.AsyncClient
) -> None:
    """A NaN tps used to be stored: then GET /api/carriers answered 500 and every submit was throttled."""
    headers = {"Content-Type": "application/json"}
    refused = await api.patch("/api/carriers/movistar", content=b'{"tps": NaN}', headers=headers)
    assert refused.status_code == 400 and "NaN" in refused.json()["error"]
    assert [profile["tps"] for profile in (await profiles(api))["carriers"]] == [None, None]
    async with ESMESession(esme_config(simulator)) as session:
        for _ in range(3):
            response = await session.submit(SubmitSM(source_addr="997745", destination_addr="34600000001"))
            assert response.command_status == CommandStatus.ESME_ROK


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
@pytest.mark.parametrize(("method", "url"), list(VALID_BODIES))
async def test_a_body_must_say_it_is_json(
    simulator: Simulator, api: httpx.AsyncClient, method: str, url: str, content_type: str | None
) -> None:
    """A page on any site may send text/plain or a form to any address without asking first: such a
    body must not be read as JSON."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    before = await profiles(api)
    body = json.dumps(VALID_BODIES[(method, url)]).encode()
    response = await api.request(method, url, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"].startswith("body: Content-Type must be application/json")
    assert await profiles(api) == before and simulator.carrier("movistar").counters.mo_injected == 0
    assert simulator.tracer is None and not simulator.loads


async def test_json_with_a_charset_is_json(simulator: Simulator, api: httpx.AsyncClient) -> None:
    body = json.dumps(VALID_BODIES[("POST", "/api/mo")]).encode()
    response = await api.post(
        "/api/mo", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8025", "127.0.0.1.evil.example", "", "[::2]:80"]
)
async def test_a_foreign_host_is_refused_dns_rebinding(
    simulator: Simulator, api: httpx.AsyncClient, host: str
) -> None:
    """A page of evil.example whose name is rebound to 127.0.0.1 reaches this port with its own name as
    Host: nothing may be read or done for it."""
    for method, url in (("GET", "/api/carriers"), ("POST", "/api/mo"), ("GET", "/phone")):
        body = json.dumps(VALID_BODIES[("POST", "/api/mo")]) if method == "POST" else None
        headers = {"Host": host, "Content-Type": "application/json"}
        response = await api.request(method, url, content=body, headers=headers)
        assert response.status_code == 421, response.text
        assert "is not this server" in response.json()["error"]
    assert simulator.carrier("movistar").counters.mo_injected == 0


async def test_local_host_names_are_served(simulator: Simulator, api: httpx.AsyncClient) -> None:
    port = simulator.control_port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", "127.0.0.1"):
        assert (await api.get("/api/status", headers={"Host": host})).status_code == 200, host


async def test_a_cross_site_origin_is_refused(simulator: Simulator, api: httpx.AsyncClient) -> None:
    body = json.dumps(VALID_BODIES[("POST", "/api/mo")])
    port = simulator.control_port
    for origin in ("http://evil.example", "null", f"http://localhost:{port}", f"https://127.0.0.1:{port}"):
        headers = {"Origin": origin, "Content-Type": "application/json"}
        response = await api.post("/api/mo", content=body, headers=headers)
        assert response.status_code == 403, (origin, response.text)
        assert "requests from other sites are refused" in response.json()["error"]
        assert (await api.post("/api/reset", headers={"Origin": origin})).status_code == 403
    assert simulator.carrier("movistar").counters.mo_injected == 0
    same_origin = {"Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json"}
    assert (await api.post("/api/mo", content=body, headers=same_origin)).status_code == 202


async def test_a_wildcard_listener_serves_ip_addresses_but_not_names() -> None:
    """Listening on every address, the API is reached by this machine's addresses; a name is still
    what DNS rebinding needs. (The app is driven in-process: tests listen on 127.0.0.1 only.)"""
    simulator = Simulator(make_config().model_copy(update={"control_host": "0.0.0.0"}))
    app = create_app(simulator, simulator.loads)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://192.0.2.7:8025") as client:
        assert (await client.get("/api/status")).status_code == 200
        assert (await client.get("/api/status", headers={"Host": "[2001:db8::7]:8025"})).status_code == 200
        assert (await client.get("/api/status", headers={"Host": "evil.example"})).status_code == 421


@pytest.mark.parametrize(
    "name",
    [
        "../escape.jsonl",
        "/tmp/escape.jsonl",
        "sub/x.jsonl",
        "..",
        ".hidden.jsonl",
        "notes.txt",
        "x.jsonl\n",
        "",
    ],
)
async def test_trace_files_stay_in_the_trace_directory(
    tracing_simulator: Simulator, trace_api: httpx.AsyncClient, trace_dir: Path, name: str
) -> None:
    response = await trace_api.put("/api/trace", json={"name": name})
    assert response.status_code == 400, response.text
    assert "is not a trace file name" in response.json()["error"]
    assert tracing_simulator.tracer is None and not entries(trace_dir)
    assert "escape.jsonl" not in {path.name for path in entries(trace_dir.parent)}


async def test_a_trace_file_that_cannot_be_opened_is_a_400(
    trace_api: httpx.AsyncClient, trace_dir: Path
) -> None:
    (trace_dir / "taken.jsonl").mkdir()
    response = await trace_api.put("/api/trace", json={"name": "taken.jsonl"})
    assert response.status_code == 400
    assert response.json()["error"] == f"name: cannot open {trace_dir / 'taken.jsonl'}: Is a directory"


def test_the_openapi_document_states_the_guards_and_every_route() -> None:
    """The document is made from the routes: each operation says what it may answer, and the trace
    name pattern is the one enforced."""
    simulator = Simulator(make_config())
    document = openapi_document()
    app = create_app(simulator, simulator.loads)
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routes == {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"403", "421"} <= statuses, (path, method)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, (path, method)
    body = document["components"]["schemas"]["TraceRequest"]
    [named, _] = body["properties"]["name"]["anyOf"]
    assert named["pattern"] == f"^{TRACE_NAME.pattern}$"
