"""``python -m discordsim serve``: a real process that prints how to connect, then stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from discordsim.scenarios import SCENARIOS

SIMULATOR_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SIMULATOR_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "discordsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_serve_refuses_a_script_whose_audio_is_missing(tmp_path: Path) -> None:
    (tmp_path / "cast.toml").write_text('[[participant]]\nname = "dan"\nfile = "nope.wav"\n')
    out = run_cli("serve", "--participants", str(tmp_path / "cast.toml"), "--lifetime", "1")
    assert out.returncode == 2 and "nope.wav" in out.stderr and "Traceback" not in out.stderr


def test_scenarios_lists_the_table() -> None:
    out = run_cli("scenarios")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(SCENARIOS)


@pytest.mark.slow
def test_serve_prints_connection_details_and_stops_by_itself(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\x00\x10" * 16_000)
    (tmp_path / "cast.toml").write_text('[[participant]]\nname = "carol"\nfile = "x.wav"\n')
    ca = tmp_path / "ca.pem"
    out = run_cli(
        "serve",
        "--scenario",
        "stale-session-4006",
        "--participants",
        str(tmp_path / "cast.toml"),
        "--lifetime",
        "1",
        "--ca-file",
        str(ca),
        "--no-listen-443",
    )
    assert out.returncode == 0, out.stderr
    assert "scenario 'stale-session-4006'" in out.stdout
    assert "voice endpoint 127.0.0.1:" in out.stdout
    assert f"SSL_CERT_FILE={ca}" in out.stdout
    assert "participants   1 scripted" in out.stdout
    assert b"BEGIN CERTIFICATE" in ca.read_bytes()
    if "API base" in out.stdout:  # the main side (discordsim.app) is installed
        assert "http://127.0.0.1:" in out.stdout and "bot token" in out.stdout


CLIENT = """
import asyncio, sys, aiohttp
async def main(endpoint):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"wss://{endpoint}/?v=8") as ws:
            print((await ws.receive()).data)
asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
async def test_a_separate_process_trusts_the_voice_gateway_through_ssl_cert_file(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "bundle.pem"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SIMULATOR_ROOT), env.get("PYTHONPATH")]))
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "discordsim", "serve", "--lifetime", "60", "--ca-file", str(ca),
        "--no-listen-443", stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        endpoint = None
        async with asyncio.timeout(30):
            while endpoint is None:
                line = (await server.stdout.readline()).decode()
                assert line, "serve exited before printing its endpoint"
                if line.strip().startswith("voice endpoint"):
                    endpoint = line.split()[2]

        async def client(trust: bool) -> tuple[int, str]:
            child_env = dict(env)
            child_env.pop("SSL_CERT_FILE", None)
            if trust:
                child_env["SSL_CERT_FILE"] = str(ca)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, endpoint,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode or 0, (out + err).decode()

        code, out = await client(trust=True)
        assert code == 0 and '"op": 8' in out, out
        code, out = await client(trust=False)
        assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in out
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 30)
