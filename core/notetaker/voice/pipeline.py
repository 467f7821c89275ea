"""The per-datagram receive path, from UDP bytes to :class:`AudioSink` calls.

    classify -> transport decrypt (+ padding strip, extension-body skip)
      -> SSRC -> user (unknown SSRCs are held briefly) -> FrameDecryptor (DAVE hook)
      -> per-speaker jitter buffer -> [Opus decode if the sink wants PCM] -> sink

No sockets and no clock reads on the media path: the caller passes each datagram's
arrival time, which makes every test an exact replay. :meth:`ReceivePipeline.feed`
never raises; whatever goes wrong is counted in :class:`ReceiveStats` by reason.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from notetaker.errors import PacketError
from notetaker.sink import OPUS_SILENCE, AudioFrame, AudioSink, Gap
from notetaker.voice.classify import PacketKind, classify
from notetaker.voice.jitter import JitterBuffer, PushResult
from notetaker.voice.opus import Decoder, OpusError
from notetaker.voice.rtp import header_layout
from notetaker.voice.stats import ReceiveStats, UserStats
from notetaker.voice.transport_crypto import TransportCipher

logger = logging.getLogger(__name__)

#: How long repeats of one internal error stay out of the log.
LOG_INTERVAL = 60.0

_RTP = PacketKind.RTP
_IGNORED = {
    PacketKind.RTCP: "rtcp",
    PacketKind.KEEPALIVE: "keepalive",
    PacketKind.DISCOVERY: "discovery",
}
_ACCEPTED = PushResult.ACCEPTED
_DUPLICATE = PushResult.DUPLICATE

#: (rtp timestamp, arrival, opus) as held in a jitter buffer.
_Item = tuple[int, float, bytes]


@runtime_checkable
class FrameDecryptor(Protocol):
    """The end-to-end (DAVE) layer, between transport decryption and the jitter buffer.

    ``decrypt`` gets the Opus frame of ``user_id`` exactly as transport decryption left
    it and returns the plain Opus frame. Contract for implementations:

    * The pipeline never passes the silence frame ``F8 FF FE`` (DAVE never encrypts it).
    * A frame without the DAVE marker (no trailing ``FA FA``) should be returned as is
      while passthrough is allowed (during transitions, and before the group is ready).
    * On failure raise :class:`~notetaker.errors.DecryptError` (choose ``reason``, e.g.
      ``"dave"``; the default is ``"decrypt"``). Never return undecrypted ciphertext as
      audio. The pipeline counts the drop and reports the slot as a ``Gap`` with reason
      ``"decrypt"``; packets are passed in arrival order, which may not be RTP order.
    """

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        """The plain Opus frame, or raise DecryptError."""
        ...


class PassthroughDecryptor:
    """No end-to-end encryption (DAVE protocol version 0): frames are already Opus."""

    __slots__ = ()

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        """Return ``frame`` unchanged."""
        return frame


class _Speaker:
    """One SSRC mapped to a user: its jitter buffer and (for PCM sinks) its decoder."""

    __slots__ = ("buffer", "decoder", "pipeline", "ssrc", "stats", "user_id")

    def __init__(self, pipeline: ReceivePipeline, ssrc: int, user_id: int) -> None:
        self.pipeline = pipeline
        self.ssrc = ssrc
        self.user_id = user_id
        self.stats: UserStats = pipeline.stats.user(user_id)
        self.decoder: Decoder | None = Decoder() if pipeline.sink.wants_pcm else None
        self.buffer: JitterBuffer[_Item] = JitterBuffer(
            self.deliver,
            self.lose,
            max_held=pipeline.max_held,
            max_wait=pipeline.max_wait,
            prefill=pipeline.prefill,
        )

    def deliver(self, seq: int, item: _Item) -> None:
        pipeline = self.pipeline
        timestamp, arrival, opus = item
        if not opus:
            # A padding-only packet's slot: nothing to play, nothing missing. Counted as
            # ignored here, when it leaves the buffer, so that while it is held it counts
            # as pending only (received == ignored + dropped + delivered + pending).
            pipeline.stats.ignore("padding_only")
            return
        pcm = None
        if self.decoder is not None:
            try:
                pcm = self.decoder.decode(opus)
            except OpusError:
                # Not audio (most likely still end-to-end encrypted): never write it out.
                pipeline.stats.drop("opus", self.user_id)
                self.lose(seq, 1, "decode")
                return
        pipeline.stats.delivered += 1
        self.stats.delivered += 1
        frame = AudioFrame(self.user_id, self.ssrc, seq, timestamp, arrival, opus, pcm)
        try:
            pipeline.sink.write(frame)
        except Exception as exc:
            pipeline.report_internal("sink.write", exc)

    def lose(self, first: int, count: int, reason: str) -> None:
        pipeline = self.pipeline
        if reason == "loss":
            pipeline.stats.lost += count
            self.stats.lost += count
        try:
            pipeline.sink.gap(Gap(self.user_id, self.ssrc, first, count, reason))
        except Exception as exc:
            pipeline.report_internal("sink.gap", exc)


class ReceivePipeline:
    """Turns voice UDP datagrams into ordered per-speaker frames for ``sink``.

    ``cipher`` opens transport encryption; ``decryptor`` is the DAVE hook (passthrough
    by default). Feed every datagram with :meth:`feed`; tell it who owns an SSRC with
    :meth:`map_ssrc` (op 5 / op 12) and who left with :meth:`forget_user` (op 13); call
    :meth:`tick` every few tens of milliseconds so holes time out without new packets;
    :meth:`close` at the end. ``clock`` is only used to rate-limit error logs.

    Packets from an SSRC nobody claimed yet are held (at most ``unknown_hold_packets``
    per SSRC and ``unknown_hold_seconds`` of arrival time, for ``unknown_max_ssrcs``
    SSRCs) and replayed when the mapping arrives; otherwise dropped as ``unknown_ssrc``.

    Not thread-safe: call it from one thread (the receive loop).
    """

    def __init__(
        self,
        cipher: TransportCipher,
        sink: AudioSink,
        decryptor: FrameDecryptor | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_held: int = 16,
        max_wait: float = 0.1,
        prefill: int = 3,
        unknown_hold_packets: int = 50,
        unknown_hold_seconds: float = 1.0,
        unknown_max_ssrcs: int = 64,
    ) -> None:
        self.cipher = cipher
        self.sink = sink
        self._decryptor: FrameDecryptor = PassthroughDecryptor()
        self._passthrough = True
        self.decryptor = decryptor or PassthroughDecryptor()
        self.clock = clock
        self.max_held = max_held
        self.max_wait = max_wait
        self.prefill = prefill
        self.unknown_hold_packets = unknown_hold_packets
        self.unknown_hold_seconds = unknown_hold_seconds
        self.unknown_max_ssrcs = unknown_max_ssrcs
        self.stats = ReceiveStats()
        self._speakers: dict[int, _Speaker] = {}
        self._unknown: dict[int, deque[tuple[int, int, float, bytes]]] = {}
        self._unknown_held = 0
        self._last_arrival = 0.0
        self._closed = False
        self._logged: dict[tuple[str, str], float] = {}

    @property
    def decryptor(self) -> FrameDecryptor:
        """The end-to-end layer; assign a new one when DAVE starts or stops."""
        return self._decryptor

    @decryptor.setter
    def decryptor(self, decryptor: FrameDecryptor) -> None:
        self._decryptor = decryptor
        self._passthrough = isinstance(decryptor, PassthroughDecryptor)

    # -- the hot path -------------------------------------------------------------

    def feed(self, datagram: bytes, arrival: float) -> None:
        """Process one datagram received at ``arrival`` (seconds, monotonic). Never raises."""
        stats = self.stats
        stats.received += 1
        try:
            if self._closed:
                stats.drop("closed")
                return
            if arrival > self._last_arrival:
                self._last_arrival = arrival
            kind = classify(datagram)
            if kind is _RTP:
                self._rtp(datagram, arrival)
            elif kind in _IGNORED:
                stats.ignore(_IGNORED[kind])
            elif kind is PacketKind.OTHER_RTP:
                stats.drop("payload_type")
            else:
                stats.drop("malformed")
        except PacketError as exc:
            stats.drop(exc.reason)
        except Exception as exc:
            stats.drop("internal")
            self.report_internal("feed", exc)

    def _rtp(self, datagram: bytes, arrival: float) -> None:
        seq, timestamp, ssrc, header_size, extension_size, padded = header_layout(datagram)
        opus = self.cipher.open_rtp(datagram, header_size, extension_size, padded)
        self.stats.decrypted += 1
        speaker = self._speakers.get(ssrc)
        if speaker is None:
            self._hold_unknown(ssrc, seq, timestamp, arrival, opus)
        else:
            self._accept(speaker, seq, timestamp, arrival, opus)

    def _accept(
        self, speaker: _Speaker, seq: int, timestamp: int, arrival: float, opus: bytes
    ) -> None:
        if not opus:
            # Padding only (senders pad at silence boundaries, field-behaviours.md M3): no
            # audio and nothing end-to-end encrypted, but it holds a sequence number, so
            # it goes through the jitter buffer as a slot that plays out as nothing: not a
            # decrypt failure, not a gap (counted as ignored when it plays out).
            result = speaker.buffer.push(seq, (timestamp, arrival, opus), arrival)
            if result is not _ACCEPTED:
                self.stats.drop("duplicate" if result is _DUPLICATE else "late", speaker.user_id)
            return
        speaker.stats.received += 1
        if not self._passthrough and opus != OPUS_SILENCE:
            try:
                opus = self._decryptor.decrypt(speaker.user_id, opus)
            except Exception as exc:
                if isinstance(exc, PacketError):
                    self.stats.drop(exc.reason, speaker.user_id)
                else:
                    self.stats.drop("internal", speaker.user_id)
                    self.report_internal("decryptor", exc)
                speaker.buffer.push_failed(seq, arrival, "decrypt")
                return
        result = speaker.buffer.push(seq, (timestamp, arrival, opus), arrival)
        if result is not _ACCEPTED:
            reason = "duplicate" if result is _DUPLICATE else "late"
            self.stats.drop(reason, speaker.user_id)

    # -- unknown SSRCs ------------------------------------------------------------

    def _hold_unknown(
        self, ssrc: int, seq: int, timestamp: int, arrival: float, opus: bytes
    ) -> None:
        queue = self._unknown.get(ssrc)
        if queue is None:
            if len(self._unknown) >= self.unknown_max_ssrcs:
                oldest = next(iter(self._unknown))
                self._discard_unknown(oldest, len(self._unknown[oldest]))
                del self._unknown[oldest]
            queue = self._unknown[ssrc] = deque()
        self._expire(queue, arrival)
        if len(queue) >= self.unknown_hold_packets:
            queue.popleft()
            self._discard_unknown(ssrc, 1)
        queue.append((seq, timestamp, arrival, opus))
        self._unknown_held += 1

    def _expire(self, queue: deque[tuple[int, int, float, bytes]], now: float) -> None:
        limit = now - self.unknown_hold_seconds
        expired = 0
        while queue and queue[0][2] < limit:
            queue.popleft()
            expired += 1
        if expired:
            self._discard_unknown(None, expired)

    def _discard_unknown(self, ssrc: int | None, count: int) -> None:
        self._unknown_held -= count
        self.stats.drop("unknown_ssrc", count=count)

    # -- control ------------------------------------------------------------------

    def map_ssrc(self, ssrc: int, user_id: int, now: float | None = None) -> None:
        """``ssrc`` belongs to ``user_id`` (op 5 ``ssrc``, op 12 ``audio_ssrc``).

        Packets held for it that are younger than ``unknown_hold_seconds`` (measured at
        ``now``, default the latest arrival seen) are replayed into its jitter buffer.
        """
        speaker = self._speakers.get(ssrc)
        if speaker is not None:
            if speaker.user_id == user_id:
                return
            speaker.buffer.flush()
        speaker = self._speakers[ssrc] = _Speaker(self, ssrc, user_id)
        queue = self._unknown.pop(ssrc, None)
        if queue:
            self._expire(queue, self._last_arrival if now is None else now)
            self._unknown_held -= len(queue)
            for seq, timestamp, arrival, opus in queue:
                self._accept(speaker, seq, timestamp, arrival, opus)

    def forget_user(self, user_id: int) -> None:
        """``user_id`` left (op 13): flush what is held for them and drop their SSRCs."""
        for ssrc in [s for s, sp in self._speakers.items() if sp.user_id == user_id]:
            self._speakers.pop(ssrc).buffer.flush()

    def user_for(self, ssrc: int) -> int | None:
        """The user an SSRC is mapped to, if any."""
        speaker = self._speakers.get(ssrc)
        return None if speaker is None else speaker.user_id

    def set_cipher(self, cipher: TransportCipher) -> None:
        """Switch to a new session key (a new Session Description after reconnecting)."""
        self.cipher = cipher

    def tick(self, now: float) -> None:
        """Let time pass: give up on holes older than ``max_wait``, expire held packets."""
        for speaker in list(self._speakers.values()):
            speaker.buffer.tick(now)
        for ssrc, queue in list(self._unknown.items()):
            self._expire(queue, now)
            if not queue:
                del self._unknown[ssrc]

    @property
    def pending(self) -> int:
        """Packets held right now (jitter buffers plus the unknown-SSRC queue)."""
        return self._unknown_held + sum(s.buffer.held for s in self._speakers.values())

    def close(self, *, close_sink: bool = True) -> None:
        """Flush every speaker, drop what is still unclaimed, and close the sink (unless
        ``close_sink`` is False: a sink outliving this connection). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for speaker in list(self._speakers.values()):
            speaker.buffer.flush()
        for ssrc, queue in list(self._unknown.items()):
            self._discard_unknown(ssrc, len(queue))
        self._unknown.clear()
        if not close_sink:
            return
        try:
            self.sink.close()
        except Exception as exc:
            self.report_internal("sink.close", exc)

    def report_internal(self, where: str, exc: BaseException) -> None:
        """Log an unexpected error, once per (place, type) every ``LOG_INTERVAL`` s."""
        key = (where, type(exc).__name__)
        now = self.clock()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._logged[key] = now
        logger.error(
            "voice receive: unexpected %s in %s (repeats muted for %.0f s): %s",
            key[1],
            where,
            LOG_INTERVAL,
            exc,
            exc_info=exc,
        )
