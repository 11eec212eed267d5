"""An SMSC simulator: simulated carriers on SMPP ports, a control API, a load generator, a virtual phone."""

from simulator.core import Simulator, UnknownCarrier
from simulator.errors import SettingsError
from simulator.profiles import (
    CarrierProfile,
    DelayDistribution,
    ReceiptProfile,
    SimulatorConfig,
    default_config,
    load_config,
    parse_config,
)

__all__ = [
    "CarrierProfile",
    "DelayDistribution",
    "ReceiptProfile",
    "SettingsError",
    "Simulator",
    "SimulatorConfig",
    "UnknownCarrier",
    "default_config",
    "load_config",
    "parse_config",
]
