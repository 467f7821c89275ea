"""A bare main-gateway client (no Discord library involved), for tests of the simulator itself."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import aiohttp

from discordsim.app import Simulator


class RawGateway:
    """One WebSocket to the simulator's main gateway, speaking JSON (optionally zlib-stream)."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, zlib_stream: bool, zstd: Any = None
    ) -> None:
        self.ws = ws
        self._inflate = zlib.decompressobj() if zlib_stream else None
        self._zstd = zstd
        self._buffer = bytearray()
        self.seq: int | None = None
        self.raw_frames: list[bytes] = []

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        sim: Simulator,
        *,
        zlib_stream: bool = False,
        zstd_stream: bool = False,
    ) -> RawGateway:
        """Connect; ``zstd_stream`` needs the zstandard package."""
        url = sim.gateway_url + "?v=10&encoding=json"
        zstd = None
        if zlib_stream:
            url += "&compress=zlib-stream"
        elif zstd_stream:
            import zstandard  # type: ignore[import-not-found,unused-ignore]

            zstd = zstandard.ZstdDecompressor().decompressobj()
            url += "&compress=zstd-stream"
        ws = await session.ws_connect(url)
        return cls(ws, zlib_stream, zstd)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next payload; raises ConnectionError with the close code if the socket closed."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    payload: dict[str, Any] = json.loads(msg.data)
                    break
                if msg.type == aiohttp.WSMsgType.BINARY and self._zstd is not None:
                    self.raw_frames.append(msg.data)
                    payload = json.loads(self._zstd.decompress(msg.data))
                    break
                if msg.type == aiohttp.WSMsgType.BINARY:
                    assert self._inflate is not None, "binary frame without compression"
                    self.raw_frames.append(msg.data)
                    self._buffer.extend(msg.data)
                    if not self._buffer.endswith(b"\x00\x00\xff\xff"):
                        continue
                    payload = json.loads(self._inflate.decompress(bytes(self._buffer)))
                    self._buffer.clear()
                    break
                raise ConnectionError(self.ws.close_code)
        if payload.get("s") is not None:
            self.seq = payload["s"]
        return payload

    async def recv_dispatch(self, t: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Skip payloads until a dispatch named ``t``; return its ``d``."""
        async with asyncio.timeout(timeout):
            while True:
                payload = await self.recv(timeout)
                if payload["op"] == 0 and payload["t"] == t:
                    d: dict[str, Any] = payload["d"]
                    return d

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def identify(self, token: str, *, intents: int = 513) -> dict[str, Any]:
        """Hello, Identify; returns READY's ``d``."""
        hello = await self.recv()
        assert hello["op"] == 10
        await self.send(
            2,
            {
                "token": token,
                "intents": intents,
                "properties": {"os": "linux", "browser": "test", "device": "test"},
            },
        )
        return await self.recv_dispatch("READY")

    async def closed_with(self, timeout: float = 5.0) -> int | None:  # noqa: ASYNC109
        """Read until the server closes the socket; return the close code."""
        try:
            while True:
                await self.recv(timeout)
        except ConnectionError as exc:
            code: int | None = exc.args[0]
            return code
