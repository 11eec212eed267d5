"""Metrics collectors and the /metrics + /healthz app, driven through ASGI (no sockets)."""

from __future__ import annotations

import httpx

from gatewayd.metrics import GatewayMetrics, HealthReport, create_metrics_app, labelled_children


async def get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gatewayd") as client:
        return await client.get(path)


async def test_metrics_endpoint_exposes_the_collectors() -> None:
    metrics = GatewayMetrics()
    metrics.binds_up.labels(carrier="movistar").set(2)
    metrics.mo_received.labels(carrier="movistar", short_code="997745").inc(3)
    metrics.submit_latency.labels(carrier="movistar").observe(0.02)
    dropped = [5]
    metrics.track_bus_drops(lambda: dropped[0])
    metrics.track_receipts_dropped(lambda: 7, lambda: 1)
    response = await get(create_metrics_app(metrics, lambda: HealthReport(True)), "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'gatewayd_binds_up{carrier="movistar"} 2.0' in body
    assert 'gatewayd_mo_received_total{carrier="movistar",short_code="997745"} 3.0' in body
    assert 'gatewayd_submit_latency_seconds_count{carrier="movistar"} 1.0' in body
    assert "gatewayd_bus_events_dropped_total 5.0" in body
    assert "gatewayd_receipts_unparsable_total 7.0" in body and "gatewayd_receipts_refused_total 1.0" in body


def test_each_instance_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.mo_duplicates.labels(carrier="vodafone").inc()
    assert b'gatewayd_mo_duplicates_total{carrier="vodafone"} 1.0' in first.render()
    assert b"vodafone" not in second.render()


async def test_healthz_is_503_when_not_ok_or_failing() -> None:
    metrics = GatewayMetrics()

    async def unhealthy() -> HealthReport:
        return HealthReport(False, {"binds": {"movistar": 0}})

    def broken() -> HealthReport:
        raise RuntimeError("database unreachable")

    healthy = await get(create_metrics_app(metrics, lambda: HealthReport(True, {"binds": 2})), "/healthz")
    assert (healthy.status_code, healthy.json()) == (200, {"ok": True, "binds": 2})
    sick = await get(create_metrics_app(metrics, unhealthy), "/healthz")
    assert (sick.status_code, sick.json()) == (503, {"ok": False, "binds": {"movistar": 0}})
    failing = await get(create_metrics_app(metrics, broken), "/healthz")
    assert (failing.status_code, failing.json()) == (503, {"ok": False, "error": "RuntimeError"})


def test_labelled_children_are_remembered_and_count() -> None:
    metrics = GatewayMetrics()
    receipts = labelled_children(metrics.receipts)
    child = receipts("movistar", "delivered")
    assert receipts("movistar", "delivered") is child
    assert receipts("movistar", "expired") is not child
    child.inc()
    receipts("movistar", "delivered").inc(2)
    assert b'gatewayd_receipts_total{carrier="movistar",state="delivered"} 3.0' in metrics.render()
