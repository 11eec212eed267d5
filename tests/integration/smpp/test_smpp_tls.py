"""SMPP over TLS: our ESME and our SMSC with ssl contexts, a throwaway self-signed certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from smpp.aio import ESMEConfig, ESMESession, SMSCServer
from smpp.pdu import SubmitSM, SubmitSMResp
from tests.integration.smpp.smpp_peers import PASSWORD, RecordingHandler

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS test needs the openssl command line tool"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_bind_and_submit_over_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    handler = RecordingHandler()
    async with SMSCServer(handler, ssl=server_context) as server:
        config = ESMEConfig(
            host="127.0.0.1", port=server.port, system_id="tls", password=PASSWORD, ssl=client_context
        )
        async with ESMESession(config) as esme:
            result = await esme.submit(SubmitSM(short_message=b"secret"))
        assert isinstance(result, SubmitSMResp)
    assert [bind.system_id for bind in handler.binds] == ["tls"]
