"""The README's curl examples work, as written, against a running simulator (only its address differs)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from simulator import Simulator

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[3] / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8025"


def readme_curl_commands() -> list[str]:
    """Every curl command of the README's shell blocks, comments included, continuation lines joined."""
    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            command = line.lstrip("# ").strip()
            if command.startswith("curl ") and DOCUMENTED_URL in command:
                commands.append(command)
    return commands


async def test_the_readme_curl_examples_work_as_written(
    tracing_simulator: Simulator, trace_dir: Path
) -> None:
    commands = readme_curl_commands()
    assert len(commands) >= 5 and any("/api/trace" in command for command in commands)
    assert tracing_simulator.control_url is not None
    for command in commands:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command.replace(DOCUMENTED_URL, tracing_simulator.control_url),
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, command
        answer = json.loads(output)
        assert "error" not in answer, (command, answer)
    assert tracing_simulator.carrier("movistar").counters.mo_injected == 1
    assert tracing_simulator.tracer is not None and tracing_simulator.tracer.path == str(
        trace_dir / "pdus.jsonl"
    )
