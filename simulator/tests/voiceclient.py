"""A deliberately small voice client for the simulator's own tests.

Real TLS WebSocket (aiohttp), a real UDP socket, real AEAD (its own few lines over
``cryptography`` and PyNaCl, not the server's code) and real Opus decoding (PyAV). It is
test code: it does what a test tells it, step by step, and keeps everything it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import nacl.bindings
import nacl.secret
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from discordsim.scenarios import SCENARIOS, Scenario
from discordsim.voice import DaveDelivery, VoiceServer
from discordsim.world import VoiceGrant, World

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Received:
    ssrc: int
    seq: int
    timestamp: int
    extension: bytes
    opus: bytes


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


def open_rtpsize(mode: str, key: bytes, packet: bytes) -> tuple[bytes, bytes]:
    """Decrypt an rtpsize packet: (clear header, plaintext). Independent of discordsim."""
    if 200 <= packet[1] <= 204:
        header_len = 8
    else:
        header_len = 12 + 4 * (packet[0] & 0x0F) + (4 if packet[0] & 0x10 else 0)
    header, sealed, tail = packet[:header_len], packet[header_len:-4], packet[-4:]
    if mode == "aead_aes256_gcm_rtpsize":
        return header, AESGCM(key).decrypt(tail + b"\x00" * 8, sealed, header)
    if mode == "aead_xchacha20_poly1305_rtpsize":
        nonce = tail + b"\x00" * 20
        return header, nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed, header, nonce, key
        )
    raise ValueError(mode)


def seal_rtpsize(mode: str, key: bytes, header: bytes, body: bytes, counter: int) -> bytes:
    tail = struct.pack(">I", counter)
    if mode == "aead_aes256_gcm_rtpsize":
        return header + AESGCM(key).encrypt(tail + b"\x00" * 8, body, header) + tail
    nonce = tail + b"\x00" * 20
    return (
        header
        + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(body, header, nonce, key)
        + tail
    )


@dataclass
class VoiceClient:
    """One voice connection driven by a test."""

    ssl_context: ssl.SSLContext
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = -1
    close_code: int | None = None
    ssrc: int = 0
    mode: str = ""
    key: bytes = b""
    received: list[Received] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._udp: _Udp | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._udp_reader: asyncio.Task[None] | None = None
        self._counter = 0
        self._read_from = 0

    # -- WebSocket -------------------------------------------------------------------
    async def connect(
        self, endpoint: str, version: int | None = 8, *, hello: bool = True
    ) -> dict[str, Any]:
        """Open ``wss://endpoint/?v=N`` and return Hello's ``d`` (``hello=False``: return
        at once, ``{}``, for a server that sends Hello later)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self.close_code = None
        self._read_from = len(self.messages)
        query = "" if version is None else f"?v={version}"
        self._ws = await self._http.ws_connect(f"wss://{endpoint}/{query}", ssl=self.ssl_context)
        self._reader = asyncio.create_task(self._read(self._ws))
        if not hello:
            return {}
        return (await self.recv(8))["d"]

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "seq" in data:
                    self.last_seq = data["seq"]
                self.messages.append(data)
                self._changed.set()
            elif msg.type == aiohttp.WSMsgType.BINARY:
                raw = bytes(msg.data)
                seq, op = struct.unpack_from(">HB", raw)
                self.last_seq = seq
                self.messages.append({"op": op, "seq": seq, "binary": raw[3:]})
                self._changed.set()
        self.close_code = ws.close_code
        self._changed.set()

    async def _until(self, check: Any, within: float) -> Any:
        async with asyncio.timeout(within):
            while True:
                found = check()
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def recv(self, op: int, within: float = 10.0) -> dict[str, Any]:
        """The next unread message with this op (messages before it stay readable)."""

        def check() -> dict[str, Any] | None:
            for i in range(self._read_from, len(self.messages)):
                if self.messages[i]["op"] == op:
                    msg = self.messages.pop(i)
                    self.messages.insert(self._read_from, msg)
                    self._read_from += 1
                    return msg
            if self.close_code is not None:
                raise ConnectionError(f"closed {self.close_code} while waiting for op {op}")
            return None

        return await self._until(check, within)

    async def closed(self, within: float = 10.0) -> int:
        """Wait for the server to close the socket; its close code."""
        return await self._until(lambda: self.close_code, within)

    def ops(self, op: int) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["op"] == op]

    async def send(self, op: int, d: Any) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"op": op, "d": d}))

    async def send_binary(self, op: int, payload: bytes) -> None:
        """Client -> server binary frame: ``[u8 op][payload]``."""
        assert self._ws is not None
        await self._ws.send_bytes(bytes([op]) + payload)

    async def close(self, code: int = 1000) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=code)
        if self._reader is not None:
            await self._reader

    async def identify(self, grant: Any, session_id: str, dave: int | None = 0) -> dict[str, Any]:
        d = {
            "server_id": str(grant.guild_id),
            "user_id": str(grant.user_id),
            "session_id": session_id,
            "token": grant.token,
        }
        if dave is not None:
            d["max_dave_protocol_version"] = dave
        await self.send(0, d)
        ready = (await self.recv(2))["d"]
        self.ssrc = ready["ssrc"]
        return ready

    # -- UDP -------------------------------------------------------------------------
    async def discover(self, ready: dict[str, Any]) -> tuple[str, int]:
        """Open the UDP socket and do IP discovery against Ready's ip/port."""
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, local_addr=("127.0.0.1", 0), remote_addr=(ready["ip"], ready["port"])
        )
        self._udp, self._udp_transport = proto, transport
        transport.sendto(struct.pack(">HHI64sH", 1, 70, self.ssrc, b"", 0))
        reply = await asyncio.wait_for(proto.queue.get(), 5)
        assert len(reply) == 74 and reply[1] == 2, reply
        ip = reply[8:72].rstrip(b"\x00").decode()
        port = struct.unpack_from(">H", reply, 72)[0]
        return ip, port

    async def select(self, mode: str, address: tuple[str, int]) -> dict[str, Any]:
        """Select Protocol; returns Session Description's ``d`` and starts reading media."""
        data = {"address": address[0], "port": address[1], "mode": mode}
        await self.send(1, {"protocol": "udp", "data": data})
        desc = (await self.recv(4))["d"]
        self.mode, self.key = desc["mode"], bytes(desc["secret_key"])
        self._udp_reader = asyncio.create_task(self._read_udp())
        return desc

    async def _read_udp(self) -> None:
        assert self._udp is not None
        while True:
            data = await self._udp.queue.get()
            if len(data) == 8 or len(data) == 74:
                continue
            if 200 <= data[1] <= 204:
                clear, body = open_rtpsize(self.mode, self.key, data)
                self.rtcp.append(clear + body)
                self._changed.set()
                continue
            _, _, seq, ts, ssrc = struct.unpack_from(">BBHII", data)
            if self.mode == "xsalsa20_poly1305_lite":
                # The pre-2024 way (py-cord 2.6): a fixed 12-byte header, everything after it
                # encrypted, extension preamble included.
                plain = nacl.secret.SecretBox(self.key).decrypt(
                    data[12:-4], data[-4:] + b"\x00" * 20
                )
                words = struct.unpack_from(">H", plain, 2)[0] if data[0] & 0x10 else 0
                plain = plain[4:] if data[0] & 0x10 else plain
            else:
                header, plain = open_rtpsize(self.mode, self.key, data)
                words = (
                    struct.unpack_from(">H", header, len(header) - 2)[0] if data[0] & 0x10 else 0
                )
            self.received.append(Received(ssrc, seq, ts, plain[: 4 * words], plain[4 * words :]))
            self._changed.set()

    async def wait_packets(self, count: int, within: float = 20.0) -> None:
        await self._until(lambda: True if len(self.received) >= count else None, within)

    async def wait_rtcp(self, within: float = 10.0) -> bytes:
        return await self._until(lambda: self.rtcp[0] if self.rtcp else None, within)

    def send_audio(self, seq: int, timestamp: int, opus: bytes) -> None:
        """Send one Opus frame (X=0, as bots do)."""
        assert self._udp_transport is not None
        header = struct.pack(">BBHII", 0x80, 0x78, seq, timestamp, self.ssrc)
        self._udp_transport.sendto(seal_rtpsize(self.mode, self.key, header, opus, self._counter))
        self._counter += 1

    def send_raw_udp(self, data: bytes) -> None:
        assert self._udp_transport is not None
        self._udp_transport.sendto(data)

    async def aclose(self) -> None:
        await self.close()
        if self._udp_reader is not None:
            self._udp_reader.cancel()
        if self._udp_transport is not None:
            self._udp_transport.close()
        if self._http is not None:
            await self._http.close()


def decode_by_timestamp(packets: list[Received]) -> np.ndarray:
    """Decode one SSRC's packets and place each frame at its RTP timestamp: mono float."""
    import av
    import numpy as np

    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate = 48_000
    dec.layout = "stereo"
    unique = {p.seq: p for p in packets}.values()  # duplicates decode once
    ordered = sorted(unique, key=lambda p: p.timestamp)
    t0 = ordered[0].timestamp
    end = ordered[-1].timestamp - t0 + 960
    out = np.zeros(end, dtype=np.float64)
    for p in ordered:
        if p.opus == b"\xf8\xff\xfe":
            continue
        for frame in dec.decode(av.Packet(p.opus)):
            pcm = frame.to_ndarray().reshape(-1, 2).astype(np.float64).mean(axis=1)
            at = p.timestamp - t0
            out[at : at + len(pcm)] = pcm[: max(0, end - at)]
    return out


def best_correlation(reference: np.ndarray, signal: np.ndarray, max_lag: int = 4800) -> float:
    """Highest normalised cross-correlation of ``signal`` delayed by 0..max_lag samples
    against ``reference`` (each lag normalised over its overlapping part)."""
    import numpy as np

    n = min(len(reference), len(signal))
    a, b = reference[:n].astype(np.float64), signal[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    dots = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.arange(min(max_lag, n - 1))
    energy_a = np.cumsum(a * a)[n - 1 - lags]  # |a[: n - lag]|^2
    tail_b = np.concatenate(([0.0], np.cumsum(b * b)))
    energy_b = tail_b[n] - tail_b[lags]  # |b[lag:]|^2
    denom = np.sqrt(energy_a * energy_b)
    scores = np.where(denom > 0, dots[lags] / np.where(denom > 0, denom, 1), 0.0)
    return float(scores.max())


# -- harness ---------------------------------------------------------------------------

XCHACHA = "aead_xchacha20_poly1305_rtpsize"
AESGCM_MODE = "aead_aes256_gcm_rtpsize"


@contextlib.asynccontextmanager
async def simulator(
    scenario: Scenario | str = "modern",
    *,
    dave: DaveDelivery | None = None,
    listen_443: bool | None = None,
    **changes: Any,
) -> AsyncIterator[VoiceServer]:
    """A running VoiceServer on loopback for one test; everything is closed afterwards.

    ``changes`` tweak the scenario's fields for this test.
    """
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    if changes:
        sc = sc.with_(**changes)
    server = VoiceServer(World.default(), sc, dave=dave, listen_443=listen_443, max_lifetime_s=120)
    async with server:
        yield server


@dataclass
class Joined:
    client: VoiceClient
    grant: VoiceGrant
    session_id: str
    ready: dict[str, Any]
    desc: dict[str, Any]


async def join(
    server: VoiceServer,
    user_id: int | None = None,
    *,
    mode: str = XCHACHA,
    version: int = 8,
    dave: int | None = 0,
) -> Joined:
    """Grant, connect, identify, discover and select: a client in the call."""
    world = server.world
    uid = world.bot.id if user_id is None else user_id
    sid = secrets.token_hex(16)
    grant = server.grant(world.guild_id, uid, sid, world.voice_channel.id)
    client = VoiceClient(server.tls.client_context())
    await client.connect(grant.endpoint or "", version)
    ready = await client.identify(grant, sid, dave)
    address = await client.discover(ready)
    desc = await client.select(mode, address)
    return Joined(client, grant, sid, ready, desc)
