"""The built-in notes formats: Markdown, SRT, WebVTT and JSON. Each is a pure function of
:class:`~notetaker.notes.model.Notes`, registered as a renderer plugin by
:mod:`notetaker.notes.plugin`."""

from __future__ import annotations

import json
from collections.abc import Callable

from notetaker.notes.model import Line, MissingSpan, Notes

REASONS = {
    "loss": "packet loss",
    "decrypt": "decrypt failures",
    "reconnect": "reconnect",
    "restart": "bot restarted",
    "transcription": "the engine failed; `notetaker transcribe` retries",
}
#: Holes in the transcript whose audio is there: only its text is missing.
NOT_TRANSCRIBED = "transcription"


def clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour)."""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _what(span: MissingSpan) -> str:
    return "not transcribed" if span.reason == NOT_TRANSCRIBED else "audio missing"


def missing_text(span: MissingSpan, name: str) -> str:
    """``[audio missing 12:03-12:40, Alice: reconnect]``"""
    why = REASONS.get(span.reason, span.reason)
    return f"[{_what(span)} {clock(span.start)}-{clock(span.end)}, {name}: {why}]"


#: Meta keys that go into the front matter, in this order, under these names.
FRONT_MATTER_META = (
    ("meeting_id", "meeting_id"),
    ("guild", "guild"),
    ("guild_id", "guild_id"),
    ("channel", "channel"),
    ("channel_id", "channel_id"),
)


def front_matter(notes: Notes) -> str:
    """YAML front matter (title, date, duration, participants, guild, channel, meeting
    id), so that an Obsidian or Logseq vault can take the notes folder as it is. Every
    value is written as a JSON string or number, which YAML reads as the same value."""
    lines = [
        "---",
        f"title: {json.dumps(notes.title, ensure_ascii=False)}",
        f"date: {json.dumps(notes.started_at.strftime('%Y-%m-%dT%H:%M:%SZ'))}",
        f"duration: {json.dumps(clock(notes.duration))}",
        f"duration_s: {round(notes.duration)}",
        "participants:",
        *[f"  - {json.dumps(p.name, ensure_ascii=False)}" for p in notes.participants],
    ]
    if not notes.participants:
        lines[-1] = "participants: []"
    for key, name in FRONT_MATTER_META:
        value = notes.meta.get(key)
        if value:
            lines.append(f"{name}: {json.dumps(value, ensure_ascii=False)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def strip_front_matter(markdown: str) -> str:
    """The notes without their front matter (for a chat message)."""
    if markdown.startswith("---\n"):
        end = markdown.find("\n---\n", 4)
        if end >= 0:
            return markdown[end + 5 :].lstrip("\n")
    return markdown


def render_markdown(notes: Notes) -> str:
    out = [front_matter(notes) + f"# {notes.title}", ""]
    out.append(
        f"**Date:** {notes.started_at:%Y-%m-%d %H:%M} UTC · **Duration:** {clock(notes.duration)}"
    )
    for notice in notes.notices:
        out += ["", f"> **Note:** {notice}"]
    out += ["", "## Participants", ""]
    for p in notes.participants:
        out.append(f"- {p.name} — talk time {clock(p.talk_time)}")
    if notes.opted_out:
        out.append(f"- Opted out (not recorded): {', '.join(notes.opted_out)}")
    out += ["", "## Summary", ""]
    if notes.digest is not None:
        out += _digest_sections(notes)
    elif notes.summary:
        out.append(
            "_Extractive: these lines are quoted verbatim from the transcript, picked by how "
            "many of the meeting's frequent words they contain. Nothing here was generated._"
        )
        out.append("")
        out += [f"- [{clock(ln.start)}] {ln.name}: {ln.text}" for ln in notes.summary]
    else:
        out.append("_No speech was transcribed, so there is nothing to summarise._")
    out += ["", "## Coverage", ""]
    any_gap = False
    for p in notes.participants:
        spans = [s for s in notes.missing if s.user_id == p.user_id and s.duration >= 1.0]
        for what in ("audio missing", "not transcribed"):
            parts = [
                missing_text(s, p.name).strip("[]").removeprefix(what + " ")
                for s in spans
                if _what(s) == what
            ]
            if p.short_gaps and what == "audio missing":
                parts.append(f"{p.short_gaps} short drop(s), {p.short_gap_seconds:.1f} s in all")
            if parts:
                any_gap = True
                out.append(f"- {p.name}: {what} " + "; ".join(parts))
    if not any_gap:
        out.append("Complete: no audio is missing for any speaker.")
    out += ["", "## Transcript", ""]
    number = 0
    for ln in notes.lines:
        if notes.digest is not None and ln.missing is None and ln.text:
            number += 1  # the numbers the digest's items cite, as anchors to link to
            out.append(f'<a id="l-{number}"></a>' + _md_line(ln))
        else:
            out.append(_md_line(ln))
    return "\n".join(out).rstrip() + "\n"


def _cited(notes: Notes, lines: tuple[int, ...]) -> str:
    """``[03:12](#l-12), [04:01](#l-15)``: each cited line's time, linked to it."""
    starts = [ln.start for ln in notes.lines if ln.missing is None and ln.text]
    return ", ".join(f"[{clock(starts[n - 1])}](#l-{n})" for n in lines if 0 < n <= len(starts))


def _digest_sections(notes: Notes) -> list[str]:
    digest = notes.digest
    assert digest is not None
    out = [
        digest.summary,
        "",
        f"_Written by {digest.method}; every item below cites the transcript lines it comes from._",
    ]
    if digest.dropped:
        reasons = "; ".join(f"{count} with {why}" for why, count in sorted(digest.dropped.items()))
        total = sum(digest.dropped.values())
        out += ["", f"_{total} item(s) the model gave were left out: {reasons}._"]
    out += ["", "## Decisions", ""]
    out += [f"- {d.text} — {_cited(notes, d.lines)}" for d in digest.decisions] or ["None."]
    out += ["", "## Action items", ""]
    out += [
        f"- [ ] **{a.owner}**: {a.text}"
        + (f" (due: {a.due})" if a.due else "")
        + f" — {_cited(notes, a.lines)}"
        for a in digest.actions
    ] or ["None."]
    out += ["", "## Open questions", ""]
    out += [f"- {q.text} — {_cited(notes, q.lines)}" for q in digest.questions] or ["None."]
    return out


def _md_line(ln: Line) -> str:
    if ln.missing is not None:
        return missing_text(ln.missing, ln.name) + "  "
    return f"[{clock(ln.start)}] {ln.name}: {ln.text}  "


def render_srt(notes: Notes) -> str:
    blocks = []
    for i, ln in enumerate(notes.lines, 1):
        text = missing_text(ln.missing, ln.name) if ln.missing else f"{ln.name}: {ln.text}"
        blocks.append(f"{i}\n{_stamp(ln.start, ',')} --> {_stamp(ln.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(notes: Notes) -> str:
    out = ["WEBVTT", ""]
    for ln in notes.lines:
        out.append(f"{_stamp(ln.start, '.')} --> {_stamp(ln.end, '.')}")
        if ln.missing:
            out.append(_vtt_escape(missing_text(ln.missing, ln.name)))
        else:
            out.append(f"<v {_vtt_escape(ln.name)}>{_vtt_escape(ln.text)}")
        out.append("")
    return "\n".join(out)


def render_json(notes: Notes) -> str:
    def line(ln: Line) -> dict[str, object]:
        base: dict[str, object] = {
            "start": round(ln.start, 3),
            "end": round(ln.end, 3),
            "user_id": str(ln.user_id),
            "speaker": ln.name,
        }
        if ln.missing:
            base["missing"] = ln.missing.reason
        else:
            base["text"] = ln.text
        return base

    data = {
        "title": notes.title,
        "notices": list(notes.notices),
        "started_at": notes.started_at.isoformat(),
        "duration": round(notes.duration, 3),
        "participants": [
            {"user_id": str(p.user_id), "name": p.name, "talk_time": round(p.talk_time, 3)}
            for p in notes.participants
        ],
        "opted_out": list(notes.opted_out),
        "summary": _json_summary(notes, line),
        "missing": [
            {
                "user_id": str(s.user_id),
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "reason": s.reason,
            }
            for s in notes.missing
        ],
        "transcript": [line(ln) for ln in notes.lines],
        "meta": notes.meta,
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _json_summary(notes: Notes, line: Callable[[Line], dict[str, object]]) -> dict[str, object]:
    digest = notes.digest
    if digest is None:
        return {"method": "extractive", "lines": [line(ln) for ln in notes.summary]}
    speech = [ln for ln in notes.lines if ln.missing is None and ln.text]

    def cites(numbers: tuple[int, ...]) -> list[dict[str, object]]:
        return [{"line": n, "start": round(speech[n - 1].start, 3)} for n in numbers]

    return {
        "method": digest.method,
        "text": digest.summary,
        "decisions": [{"text": d.text, "cites": cites(d.lines)} for d in digest.decisions],
        "action_items": [
            {"text": a.text, "owner": a.owner, "due": a.due or None, "cites": cites(a.lines)}
            for a in digest.actions
        ],
        "open_questions": [{"text": q.text, "cites": cites(q.lines)} for q in digest.questions],
        "dropped": dict(digest.dropped),
    }
