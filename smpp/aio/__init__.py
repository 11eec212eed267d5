"""The thin asyncio layer over ``smpp.connection``: ESME sessions with reconnect, and an SMSC server."""

from smpp.aio.client import ESMEClient, backoff_delay
from smpp.aio.esme import (
    AnyMessageHandler,
    ESMEConfig,
    ESMESession,
    FutureMessageHandler,
    MessageHandler,
    SubmitPDU,
)
from smpp.aio.smsc import BindRequest, SMSCHandler, SMSCServer, SMSCSession
from smpp.aio.throttle import TokenBucket
from smpp.aio.transport import Callback, Outcome, SessionProtocol, WireTap

__all__ = [
    "AnyMessageHandler",
    "BindRequest",
    "Callback",
    "ESMEClient",
    "ESMEConfig",
    "ESMESession",
    "FutureMessageHandler",
    "MessageHandler",
    "Outcome",
    "SMSCHandler",
    "SMSCServer",
    "SMSCSession",
    "SessionProtocol",
    "SubmitPDU",
    "TokenBucket",
    "WireTap",
    "backoff_delay",
]
