"""The voice UDP endpoint (voice-protocol.md §4): discovery, client media in, media out.

One socket serves every session of a :class:`~discordsim.voice.server.VoiceServer`, as
one Discord voice server does; the SSRC tells sessions apart. Datagrams are classified in
the order §4.4 gives. Anything malformed or undecryptable is counted and recorded, never
raised. Media to clients goes through :class:`LossModel`, so the ``udp-loss`` scenario
can drop, reorder and duplicate it and the record says which packet met which fate.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections import Counter
from typing import TYPE_CHECKING, cast

from discordsim.voice.crypto import SILENCE_FRAME, CryptoError, is_rtcp
from discordsim.voice.gateway import discovery_reply

if TYPE_CHECKING:
    from discordsim.voice.gateway import VoiceSession
    from discordsim.voice.server import VoiceServer


class MediaProtocol(asyncio.DatagramProtocol):
    """The asyncio side of the voice UDP socket."""

    def __init__(self, server: VoiceServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.counts: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._classify(data, addr)
        except Exception as exc:  # a bad datagram must never stop the socket
            self.counts["error"] += 1
            self.server.record.add("voice.udp_drop", reason=f"error: {exc!r}", size=len(data))

    def _classify(self, data: bytes, addr: tuple[str, int]) -> None:
        rec = self.server.record
        if len(data) == 74 and data[0:2] in (b"\x00\x01", b"\x00\x02"):
            ssrc = struct.unpack_from(">I", data, 4)[0]
            session = self.server.session_by_ssrc(ssrc)
            self.counts["discovery"] += 1
            if session is not None:
                session.observed_addr = (addr[0], addr[1])
            # Some servers answer without echoing the SSRC (scenario discovery-variant).
            echoed = self.server.scenario.discovery_reply_ssrc
            reply_ssrc = ssrc if echoed is None else echoed
            rec.add(
                "voice.discovery",
                ssrc=ssrc,
                conn=session.conn_id if session else None,
                address=[addr[0], addr[1]],
                reply_ssrc=reply_ssrc,
            )
            self.sendto(discovery_reply(reply_ssrc, addr[0], addr[1]), addr)
            return
        if len(data) == 8:
            # Keepalives (discord.js: u32 LE counter + 4 zero bytes; py-cord: u64 BE counter).
            # Checked before RTP since an LE counter can start with 0x80. Ignored.
            self.counts["keepalive"] += 1
            if self.counts["keepalive"] == 1 or self.counts["keepalive"] % 50 == 0:
                rec.add("voice.keepalive", count=self.counts["keepalive"])
            return
        if is_rtcp(data):
            self._rtcp(data)
            return
        if len(data) < 12 or data[0] >> 6 != 2:
            self.counts["malformed"] += 1
            rec.add("voice.udp_drop", reason="not RTP", size=len(data))
            return
        ssrc = struct.unpack_from(">I", data, 8)[0]
        session = self.server.session_by_ssrc(ssrc)
        if session is None or session.cipher is None:
            self.counts["unknown_ssrc"] += 1
            rec.add("voice.udp_drop", reason="unknown ssrc", ssrc=ssrc, size=len(data))
            return
        try:
            pkt = session.cipher.decrypt_rtp(data)
        except CryptoError as exc:
            self.counts["undecryptable"] += 1
            rec.add("voice.udp_drop", reason=str(exc), ssrc=ssrc, size=len(data))
            return
        frame = self.server.dave.inbound_frame(session, pkt.payload)
        session.rtp_in += 1
        session.highest_seq = pkt.seq
        session.received.append((pkt.seq, pkt.timestamp, frame))
        self.counts["rtp"] += 1
        rec.add(
            "voice.rtp_in",
            conn=session.conn_id,
            ssrc=ssrc,
            seq=pkt.seq,
            timestamp=pkt.timestamp,
            size=len(frame),
            silence=frame == SILENCE_FRAME,
            before_speaking=not session.speaking_registered,
        )

    def _rtcp(self, data: bytes) -> None:
        ssrc = struct.unpack_from(">I", data, 4)[0]
        session = self.server.session_by_ssrc(ssrc)
        self.counts["rtcp"] += 1
        decrypted = False
        if session is not None and session.cipher is not None:
            try:
                session.cipher.decrypt_rtcp(data)
                decrypted = True
            except CryptoError:
                self.counts["undecryptable"] += 1
        self.server.record.add(
            "voice.rtcp_in",
            conn=session.conn_id if session else None,
            pt=data[1],
            decrypted=decrypted,
        )


class LossModel:
    """Decides each outgoing media packet's fate: sent, dropped, duplicated or reordered."""

    def __init__(self, loss_pct: float, reorder_pct: float, dup_pct: float, seed: int) -> None:
        self.loss = loss_pct / 100
        self.reorder = reorder_pct / 100
        self.dup = dup_pct / 100
        self.rng = random.Random(seed)
        self.enabled = bool(loss_pct or reorder_pct or dup_pct)

    def send(
        self,
        media: MediaProtocol,
        session: VoiceSession,
        packet: bytes,
        ssrc: int,
        seq: int,
        *,
        kind: str = "audio",
    ) -> None:
        """Send ``packet`` to the session's client under the model, recording the outcome.
        ``kind`` (recorded as ``what``): ``audio``, ``padded`` (audio with RTP padding) or
        ``padding-only``."""
        addr = session.udp_addr
        if addr is None:
            return
        action = "sent"
        if self.enabled:
            draw = self.rng.random()
            if draw < self.loss:
                action = "dropped"
            elif draw < self.loss + self.reorder and session.held is None:
                action = "held"
            elif draw < self.loss + self.reorder + self.dup:
                action = "duplicated"
        if action in ("sent", "duplicated"):
            media.sendto(packet, addr)
            if action == "duplicated":
                media.sendto(packet, addr)
            if session.held is not None:
                # The held packet goes out after a later one: reordered on the wire.
                media.sendto(session.held, addr)
                session.held = None
        elif action == "held":
            session.held = packet
        media.server.record.add(
            "voice.rtp_out", conn=session.conn_id, ssrc=ssrc, seq=seq, action=action, what=kind
        )
