"""An utterance's Opus packets to the 16 kHz mono PCM a Whisper model takes.

libopus decodes straight to 16 kHz mono (it resamples internally), so nothing else
touches the audio. Holes between packets are the speaker's short silences (silence
frames are not kept) or lost packets: up to :data:`CONCEAL_FRAMES` missing frames are
concealed by the decoder, as a player would; longer holes are silence.
"""

from __future__ import annotations

from collections.abc import Sequence

from notetaker.live.cutter import Packet
from notetaker.recorder.ogg import opus_packet_samples
from notetaker.sink import SAMPLE_RATE, SAMPLES_PER_FRAME
from notetaker.transcript import PCM_RATE
from notetaker.voice.opus import Decoder, OpusError

#: 48 kHz samples per 16 kHz sample.
_RATIO = SAMPLE_RATE // PCM_RATE
#: Holes up to this many 20 ms frames are concealed (lost packets mid-word).
CONCEAL_FRAMES = 3


def decode_utterance(packets: Sequence[Packet], start: int) -> tuple[bytes, int]:
    """16 kHz mono s16le PCM from ``start`` (48 kHz samples on the meeting clock) to the
    end of the last packet, and how many packets libopus rejected (written as silence)."""
    decoder = Decoder(PCM_RATE, 1)
    out = bytearray()
    cursor = start
    bad = 0
    for place, opus in packets:
        hole = place - cursor
        if hole > 0:
            frames = hole // SAMPLES_PER_FRAME
            if 0 < frames <= CONCEAL_FRAMES and hole % SAMPLES_PER_FRAME == 0:
                for _ in range(frames):
                    out += decoder.decode(None)
            else:
                out += bytes(2 * (hole // _RATIO))
        samples = opus_packet_samples(opus)
        try:
            pcm = decoder.decode(opus)
        except OpusError:
            bad += 1
            pcm = bytes(2 * (samples // _RATIO))
        out += pcm
        cursor = max(cursor, place + samples)
    return bytes(out), bad
