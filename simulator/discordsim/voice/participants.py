"""Scripted participants: simulated members who join the call and speak an audio file.

Any file PyAV can read (WAV, FLAC, Ogg, MP3...) at any rate is decoded, resampled to
48 kHz stereo and Opus-encoded in 20 ms frames, as a Discord client would send it. Pauses
are realistic: where the source is quiet for ``min_pause_s`` or longer the speaker sends
five silence frames and then nothing (voice activity detection), while the RTP timestamp
keeps counting, as it does for a real sender. A participant can join and leave mid-call.

A script is a TOML file with one ``[[participant]]`` table per speaker::

    [[participant]]
    name = "alice"          # a member of the simulated guild (created if missing)
    file = "alice.wav"      # relative to the script's folder
    join_at = 0.0           # seconds after the first client's voice session goes live
    speak_after = 0.5       # seconds after joining
    repeat = 1              # how many times to say it
    gap_s = 1.5             # pause between repetitions
    leave_at = 30.0         # optional: leave mid-call
    corrupt_dave = false    # optional: corrupt its DAVE frames in flight
"""

from __future__ import annotations

import asyncio
import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from discordsim.voice.crypto import SILENCE_FRAME

if TYPE_CHECKING:
    import numpy as np

    from discordsim.voice.server import VoiceServer

# PyAV and numpy are imported where audio is prepared, so that a voice server without
# scripted participants runs in environments that have neither.

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  #: 20 ms at 48 kHz
FRAME_S = 0.02
SILENCE_FRAMES_BEFORE_PAUSE = 5


@dataclass(frozen=True)
class ParticipantSpec:
    """One scripted speaker."""

    name: str
    file: Path
    join_at: float = 0.0
    speak_after: float = 0.5
    repeat: int = 1
    gap_s: float = 1.5
    leave_at: float | None = None
    #: frames quieter than this (dBFS, RMS) count as silence
    pause_threshold_db: float = -45.0
    #: silences at least this long become pauses (no packets)
    min_pause_s: float = 0.3
    #: flip a byte of every DAVE-encrypted frame in flight (the receiver must reject them)
    corrupt_dave: bool = False


def write_tone(path: Path, hz: float = 440.0, seconds: float = 1.0) -> Path:
    """Write a steady stereo sine WAV at 48 kHz: a participant who never pauses, so every
    20 ms frame is sent. For tests and stack checks, where a known signal is the point."""
    import wave

    import numpy as np

    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    mono = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.repeat(mono, 2).tobytes())
    return path


def load_script(path: Path) -> list[ParticipantSpec]:
    """Read a participants TOML script; files are relative to the script's folder."""
    data = tomllib.loads(path.read_text())
    specs = []
    for item in data.get("participant", []):
        fields = dict(item)
        fields["file"] = (path.parent / str(fields["file"])).resolve()
        if not fields["file"].is_file():
            raise FileNotFoundError(f"{path}: participant audio {fields['file']} not found")
        specs.append(ParticipantSpec(**fields))
    return specs


def decode_pcm(path: Path) -> np.ndarray:
    """The file as 48 kHz stereo s16, shape (samples, 2)."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
    chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int16)
    return np.concatenate(chunks, axis=1).reshape(-1, 2)


def encode_opus(pcm: np.ndarray) -> list[bytes]:
    """Opus packets, one per 20 ms frame (the tail padded with zeros)."""
    import av
    import numpy as np

    frames = max(1, math.ceil(len(pcm) / FRAME_SAMPLES))
    padded = np.zeros((frames * FRAME_SAMPLES, 2), dtype=np.int16)
    padded[: len(pcm)] = pcm
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = SAMPLE_RATE
    enc.layout = "stereo"
    enc.format = "s16"
    enc.bit_rate = 64_000
    enc.options = {"frame_duration": "20", "application": "voip"}
    enc.open()
    packets: list[bytes] = []
    for i in range(frames):
        chunk = padded[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = i * FRAME_SAMPLES
        packets.extend(bytes(p) for p in enc.encode(frame))
    packets.extend(bytes(p) for p in enc.encode(None))
    # The encoder's lookahead adds a packet at the end; the timeline keeps one per frame.
    return packets[:frames]


def timeline(
    pcm: np.ndarray, packets: list[bytes], threshold_db: float, min_pause_s: float
) -> list[bytes | None]:
    """One slot per 20 ms: the packet to send, or None during a pause.

    A quiet run of at least ``min_pause_s`` becomes five silence frames then nothing.
    """
    import numpy as np

    n = len(packets)
    padded = np.zeros((n * FRAME_SAMPLES, 2), dtype=np.float64)
    padded[: len(pcm)] = pcm[: n * FRAME_SAMPLES]
    rms = np.sqrt((padded.reshape(n, -1) ** 2).mean(axis=1)) / 32768.0
    quiet = 20 * np.log10(np.maximum(rms, 1e-9)) < threshold_db
    slots: list[bytes | None] = list(packets)
    min_run = max(SILENCE_FRAMES_BEFORE_PAUSE + 1, round(min_pause_s / FRAME_S))
    i = 0
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n and quiet[j]:
            j += 1
        if i == 0:
            # Nobody sends before they first speak.
            slots[i:j] = [None] * (j - i)
        elif j - i >= min_run or j == n:
            for k in range(i, j):
                slots[k] = SILENCE_FRAME if k - i < SILENCE_FRAMES_BEFORE_PAUSE else None
        i = j
    return slots


def prepare(spec: ParticipantSpec) -> list[bytes | None]:
    """Decode, resample, encode and cut pauses: the participant's whole send timeline."""
    pcm = decode_pcm(spec.file)
    slots = timeline(pcm, encode_opus(pcm), spec.pause_threshold_db, spec.min_pause_s)
    gap: list[bytes | None] = [None] * round(spec.gap_s / FRAME_S)
    out: list[bytes | None] = []
    for r in range(spec.repeat):
        if r:
            out.extend(gap)
        out.extend(slots)
    return out


class Participant:
    """A scripted speaker at run time: a guild member with an SSRC and a send timeline."""

    def __init__(
        self,
        server: VoiceServer,
        spec: ParticipantSpec,
        user_id: int,
        *,
        slots: list[bytes | None] | None = None,
    ) -> None:
        self.server = server
        self.spec = spec
        self.user_id = user_id
        self.ssrc = server.new_ssrc()
        rng = random.Random(user_id)
        # Start values are random, as discord.js does (§4.2).
        self.seq = rng.randrange(1 << 16)
        self.timestamp0 = rng.randrange(1 << 32)
        #: the script's send timeline; None until prepared (given, or decoded when it runs)
        self.slots: list[bytes | None] | None = slots
        self.sent = 0
        self.started = False
        self.in_channel = False
        #: set when the script has run (joined, spoken, left if it leaves)
        self.done = asyncio.Event()
        # The loop time of this sender's first frame slot: the RTP clock's origin, so that
        # a later speech (speak()) continues the timestamps instead of rewinding them.
        self._clock0: float | None = None
        self._speaking: asyncio.Task[None] | None = None
        #: told to leave before its script ran to the end: it does not join any more
        self.withdrawn = False

    async def run(self, start: float) -> None:
        """Join at ``join_at``, speak, leave at ``leave_at`` (or stay)."""
        loop = asyncio.get_running_loop()
        spec = self.spec
        self.started = True
        if self.slots is None:
            try:
                self.slots = await asyncio.to_thread(prepare, spec)
            except Exception as exc:  # a bad file silences this speaker, not the simulator
                self.server.record.add(
                    "voice.participant_error", user_id=self.user_id, error=repr(exc)
                )
                self.done.set()
                return
        try:
            await _sleep_until(loop, start + spec.join_at)
            if self.withdrawn:
                return
            await self.server.participant_join(self)
            if self.withdrawn or not self.in_channel:
                return  # told to leave while joining
            speak = asyncio.create_task(
                self._speak(start + spec.join_at + spec.speak_after, self.slots)
            )
            self._speaking = speak
            if spec.leave_at is not None:
                await _sleep_until(loop, start + spec.leave_at)
                speak.cancel()
            await asyncio.gather(speak, return_exceptions=True)
            if spec.leave_at is not None:
                await self.server.participant_leave(self)
        finally:
            self.done.set()

    async def speak(self, slots: list[bytes | None]) -> None:
        """Say more, now, as the same sender: same SSRC, the sequence and the RTP clock
        carrying on (a Discord client keeps both for as long as it is connected). For a
        member already in the channel whose script has run; returns when it is said."""
        if not self.in_channel:
            raise RuntimeError("a participant speaks only while in the channel")
        task = asyncio.create_task(self._speak(asyncio.get_running_loop().time(), slots))
        self._speaking = task
        await asyncio.gather(task, return_exceptions=True)

    def hush(self) -> None:
        """Stop speaking now (the member leaves, or is silenced): no frame after this."""
        if self._speaking is not None:
            self._speaking.cancel()

    def withdraw(self) -> None:
        """The member was told to leave: stop speaking, and if the script has not joined
        yet (it waits for the first voice session), never join."""
        self.withdrawn = True
        self.hush()

    async def _padding_only(self, count: int, ts: int) -> None:
        """Where speech stops: ``count`` padding-only packets, each its own sequence number
        and the last frame's timestamp (the padding scenario)."""
        for _ in range(count):
            self.seq = (self.seq + 1) & 0xFFFF
            await self.server.forward_padding(self, self.seq, ts)

    async def _speak(self, at: float, slots: list[bytes | None] | None) -> None:
        loop = asyncio.get_running_loop()
        await _sleep_until(loop, at)
        self.server.record.add("voice.participant_speak", user_id=self.user_id, ssrc=self.ssrc)
        t0 = loop.time()
        if self._clock0 is None:
            self._clock0 = t0
        # Frames since the clock's origin: the RTP timestamp counts through the silence
        # between two speeches, as a real sender's does.
        base = round((t0 - self._clock0) / FRAME_S)
        burst = self.server.scenario.padding_burst
        last_ts: int | None = None  # the timestamp of the frame before, while speaking
        for i, slot in enumerate(slots or ()):
            # Absolute deadlines: a late wake-up is caught up, never accumulated as drift.
            await _sleep_until(loop, t0 + i * FRAME_S)
            if not self.in_channel:
                break  # left mid-sentence: a member out of the call sends nothing
            if slot is None:
                if last_ts is not None:
                    await self._padding_only(burst, last_ts)
                last_ts = None
                continue
            self.seq = (self.seq + 1) & 0xFFFF
            ts = (self.timestamp0 + (base + i) * FRAME_SAMPLES) & 0xFFFFFFFF
            await self.server.forward_audio(self, self.seq, ts, slot)
            self.sent += 1
            last_ts = ts
        if last_ts is not None and self.in_channel:
            await self._padding_only(burst, last_ts)
        self.server.record.add("voice.participant_done", user_id=self.user_id, sent=self.sent)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
