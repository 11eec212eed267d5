"""Helpers of the simulator integration tests (a module name no other test folder uses)."""

from __future__ import annotations

import asyncio

from simulator import CarrierProfile, DelayDistribution, ReceiptProfile, Simulator, SimulatorConfig
from smpp.aio import ESMEConfig
from smpp.pdu import DataSM, DeliverSM

SHORT_CODES = ("997745", "795500")


def make_config(**receipts: object) -> SimulatorConfig:
    receipt_profile = ReceiptProfile(delay=DelayDistribution(kind="fixed", seconds=0.0), **receipts)  # type: ignore[arg-type]
    return SimulatorConfig(
        carriers=(
            CarrierProfile(
                name="movistar",
                country="ES",
                port=0,
                system_id="echat",
                password="secret1",
                short_codes=SHORT_CODES,
                receipts=receipt_profile,
            ),
            CarrierProfile(
                name="vodafone",
                country="ES",
                port=0,
                system_id="echat",
                password="secret2",
                short_codes=SHORT_CODES,
                receipts=receipt_profile,
            ),
        ),
        control_port=0,
        seed=7,
        tick=0.005,
    )


def esme_config(simulator: Simulator, carrier: str = "movistar", **overrides: object) -> ESMEConfig:
    password = {"movistar": "secret1", "vodafone": "secret2"}[carrier]
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": simulator.port(carrier),
        "system_id": "echat",
        "password": password,
        "response_timeout": 5.0,
        "bind_timeout": 5.0,
        "enquire_link_interval": 60.0,
    }
    values.update(overrides)
    return ESMEConfig(**values)  # type: ignore[arg-type]


class Inbox:
    """Collects what the simulator delivers to an ESME."""

    def __init__(self) -> None:
        self.pdus: list[DeliverSM | DataSM] = []
        self._changed = asyncio.Event()

    async def __call__(self, pdu: DeliverSM | DataSM) -> int:
        self.pdus.append(pdu)
        self._changed.set()
        return 0

    async def wait_for(self, count: int, seconds: float = 10.0) -> list[DeliverSM | DataSM]:
        async with asyncio.timeout(seconds):
            while len(self.pdus) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.pdus
