"""Meeting notes: merge every speaker's segments into one timeline, mark where audio is
missing, and render the result (Markdown, SRT, WebVTT, JSON; more through plugins)."""

from notetaker.notes.model import MissingSpan, Notes, Participant, build_notes

__all__ = ["MissingSpan", "Notes", "Participant", "build_notes"]
