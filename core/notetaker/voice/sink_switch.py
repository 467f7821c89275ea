"""The one sink a voice connection writes to, whose target can change under it.

The receive pipeline is built once per voice session, but the user's sink is set, swapped
or removed while the session runs and outlives it; :class:`SinkSwitch` sits between them.
"""

from __future__ import annotations

from notetaker.sink import AudioFrame, AudioSink, Gap


class SinkSwitch(AudioSink):
    """The sink the pipeline writes to; forwards to whatever sink is set now.

    The user's sink survives reconnects and is closed by whoever owns it, so closing a
    session's pipeline must not close it: :meth:`close` does nothing.
    """

    def __init__(self) -> None:
        self.target: AudioSink | None = None

    def set(self, sink: AudioSink | None) -> None:
        """Deliver to ``sink`` from now on (None: drop frames)."""
        self.target = sink
        self.wants_pcm = bool(sink is not None and sink.wants_pcm)

    def write(self, frame: AudioFrame) -> None:
        if self.target is not None:
            self.target.write(frame)

    def gap(self, gap: Gap) -> None:
        if self.target is not None:
            self.target.gap(gap)

    def close(self) -> None:
        """Not forwarded: the target outlives this session."""
