"""Core's own plugin: registers the built-in notes formats."""

from __future__ import annotations

from notetaker.hookspecs import hookimpl
from notetaker.notes import picture, render
from notetaker.registry import Registry, RendererSpec


@hookimpl
def notetaker_register_renderers(register: Registry[RendererSpec]) -> None:
    register.add(RendererSpec("markdown", "md", render.render_markdown, "Markdown notes"))
    register.add(RendererSpec("srt", "srt", render.render_srt, "SubRip subtitles"))
    register.add(RendererSpec("vtt", "vtt", render.render_vtt, "WebVTT subtitles"))
    register.add(RendererSpec("json", "json", render.render_json, "everything, as JSON"))
    register.add(
        RendererSpec(
            "timeline",
            "png",
            picture.render_png,
            "a lane per speaker: speech, and missing audio by cause",
            filename="timeline.png",
        )
    )
