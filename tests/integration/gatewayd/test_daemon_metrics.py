"""The daemon serves /metrics and /healthz; the Grafana dashboard only uses metrics that exist."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from sqlalchemy import select, text

from gatewayd.config import ListenAddress, MetricsConfig
from gatewayd.metrics import GatewayMetrics
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.waiting import eventually

DASHBOARD = Path(__file__).resolve().parents[3] / "dashboards" / "gatewayd-grafana.json"


async def test_metrics_and_health_are_served(tmp_path: Path, sqlite_url: str, simulator: Simulator) -> None:
    config = make_config(tmp_path, sqlite_url, simulator)
    metrics_config = MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))
    config = config.model_copy(update={"metrics": metrics_config})
    async with running_daemon(config) as daemon:
        await daemon.metrics_started.wait()
        base = f"http://127.0.0.1:{daemon.metrics_service.port}"
        simulator.inject_mo(MOVISTAR, "+34600111222", MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: daemon.mo is not None and daemon.mo.stored == 1)
        async with httpx.AsyncClient(base_url=base) as client:
            health = await client.get("/healthz")
            metrics = (await client.get("/metrics")).text
        assert health.status_code == 200
        assert health.json()["binds_up"] == {"movistar": 1, "vodafone": 1}
        received = f'gatewayd_mo_received_total{{carrier="movistar",short_code="{MOVISTAR_SHORT_CODE}"}} 1.0'
        assert received in metrics
        assert 'gatewayd_db_commit_seconds_count{operation="mo"}' in metrics
        # the cluster's: this daemon alone owns every bind slot
        assert 'instance="gatewayd-test"' in metrics and "gatewayd_instance_info{" in metrics
        assert 'gatewayd_bind_slots_owned{carrier="movistar"} 1.0' in metrics
        assert 'gatewayd_bind_slots_configured{carrier="vodafone"} 1.0' in metrics
        assert "gatewayd_cluster_daemons 1.0" in metrics
        age = float(re.findall(r"^gatewayd_cluster_heartbeat_age_seconds (\S+)$", metrics, re.MULTILINE)[0])
        assert 0 <= age < 5
        assert "gatewayd_mo_pending 0.0" in metrics and "gatewayd_receipts_pending 0.0" in metrics
        assert health.json()["binds_owned"] == {"movistar": 1, "vodafone": 1}


async def test_scrapes_on_a_kept_alive_connection_are_not_held_by_delayed_acks(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    """Nagle's algorithm on the metrics socket held every response after the first on a connection
    until the client's delayed ACK: ~44 ms a scrape."""
    config = make_config(tmp_path, sqlite_url, simulator)
    metrics_config = MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))
    config = config.model_copy(update={"metrics": metrics_config})
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with running_daemon(config) as daemon:
        await daemon.metrics_started.wait()
        base = f"http://127.0.0.1:{daemon.metrics_service.port}"
        async with httpx.AsyncClient(base_url=base, limits=one_connection) as client:
            started = time.perf_counter()
            for _ in range(200):
                assert (await client.get("/metrics")).status_code == 200
            elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"200 scrapes on one connection took {elapsed:.1f} s"


async def test_health_turns_unhealthy_while_claims_keep_failing(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """Binds up, process alive, but every claim fails (here the outbox table is gone): /healthz says
    503 and names the failing loops; once claims work again it is healthy again."""
    config = make_config(tmp_path, pg_url, simulator)
    metrics_config = MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))
    config = config.model_copy(update={"metrics": metrics_config})
    async with running_daemon(config) as daemon:
        await daemon.metrics_started.wait()
        assert daemon.sessions is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.metrics_service.port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mt_messages RENAME TO mt_messages_away"))

            # The reconcile loop may be reported first; wait for the claim loop itself.
            async def claims_failing() -> bool:
                response = await client.get("/healthz")
                return response.status_code == 503 and "mt.claim" in response.json()["failing"]

            await eventually(claims_failing, within=30, interval=0.2)
            report = (await client.get("/healthz")).json()
            assert report["ok"] is False and report["binds_up"] == {"movistar": 1, "vodafone": 1}
            assert report["failing"]["mt.claim"]["failures"] >= 2
            assert "mt_messages" in report["failing"]["mt.claim"]["last_error"]
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mt_messages_away RENAME TO mt_messages"))

            async def healthy() -> bool:
                return (await client.get("/healthz")).status_code == 200

            await eventually(healthy, within=30, interval=0.2)
            assert (await client.get("/healthz")).json()["failing"] == {}


async def test_health_turns_unhealthy_while_mo_commits_keep_failing(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """MOs keep coming and every commit fails (the MO table is gone): /healthz names ``mo.commit``
    while the SMSC is answered ESME_RX_T_APPN, and turns healthy once the MOs are stored."""
    config = make_config(tmp_path, pg_url, simulator)
    metrics_config = MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))
    config = config.model_copy(update={"metrics": metrics_config})
    async with running_daemon(config) as daemon:
        await daemon.metrics_started.wait()
        assert daemon.sessions is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.metrics_service.port}") as client:
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mo_messages RENAME TO mo_messages_away"))
            simulator.inject_mo(MOVISTAR, "+34600111222", MOVISTAR_SHORT_CODE, "hola")

            async def unhealthy() -> bool:
                return (await client.get("/healthz")).status_code == 503

            await eventually(unhealthy, within=30, interval=0.2)
            report = (await client.get("/healthz")).json()
            assert "mo.commit" in report["failing"]
            assert "mo_messages" in report["failing"]["mo.commit"]["last_error"]
            failing = re.search(
                r'^gatewayd_loop_failing_seconds\{loop="mo.commit"\} (\S+)$',
                (await client.get("/metrics")).text,
                re.MULTILINE,
            )
            assert failing is not None and float(failing.group(1)) >= 5

            async def counted() -> bool:  # once the commit's retries gave up: answered ESME_RX_T_APPN
                metrics = (await client.get("/metrics")).text
                found = re.findall(r"^gatewayd_mo_commit_failures_total (\S+)$", metrics, re.MULTILINE)
                return bool(found) and float(found[0]) >= 1

            await eventually(counted, within=30, interval=0.2)
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mo_messages_away RENAME TO mo_messages"))

            async def healthy() -> bool:
                return (await client.get("/healthz")).status_code == 200

            await eventually(healthy, within=60, interval=0.2)
            assert "gatewayd_loop_failing_seconds{" not in (await client.get("/metrics")).text
        assert simulator.carrier(MOVISTAR).counters.mo_delivered == 1


def test_dashboard_uses_only_exported_metrics() -> None:
    exported = set(re.findall(r"^# TYPE (\S+) ", GatewayMetrics().render().decode(), re.MULTILINE))
    names = exported | {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {
        match
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])  # a row has none
        for match in re.findall(r"gatewayd_[a-z_]+", target["expr"])
    }
    assert used and used <= names, used - names


def test_dashboard_panels_have_their_own_ids_and_places() -> None:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "two panels overlap"
    assert all(x < 24 for x, _ in cells)
    assert "Cluster" in {panel["title"] for panel in panels if panel["type"] == "row"}


async def test_receipts_the_database_does_not_take_are_counted(tmp_path: Path, pg_url: str) -> None:
    """Receipts whose commit keeps failing (the parts table is gone) are answered ESME_RX_T_APPN and
    counted; once the table is back the SMSC's redelivery applies them."""
    async with Simulator(simulator_config(receipt_delay=1.0)) as simulator:
        config = make_config(tmp_path, pg_url, simulator)
        metrics_config = MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))
        config = config.model_copy(update={"metrics": metrics_config})
        async with running_daemon(config) as daemon:
            await daemon.metrics_started.wait()
            assert daemon.sessions is not None
            mt_id = await daemon.queue_mt("+34600111222", "hola", carrier=MOVISTAR)
            counters = simulator.carrier(MOVISTAR).counters
            await eventually(lambda: counters.mt_accepted == 1)
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mt_parts RENAME TO mt_parts_away"))
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.metrics_service.port}"
            ) as client:

                async def counted() -> bool:
                    metrics = (await client.get("/metrics")).text
                    found = re.findall(
                        r"^gatewayd_receipt_commit_failures_total (\S+)$", metrics, re.MULTILINE
                    )
                    return bool(found) and float(found[0]) >= 1

                await eventually(counted, within=30, interval=0.2)
            async with daemon.sessions.begin() as session:
                await session.execute(text("ALTER TABLE mt_parts_away RENAME TO mt_parts"))

            async def delivered() -> bool:
                assert daemon.sessions is not None
                async with daemon.sessions() as session:
                    status = await session.scalar(select(MTMessage.status).where(MTMessage.id == mt_id))
                return status == MTStatus.DELIVERED

            await eventually(delivered, within=60, interval=0.2)
