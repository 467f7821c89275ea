"""Core's own plugin: registers the built-in notes formats and summarizers."""

from __future__ import annotations

from notetaker.hookspecs import hookimpl
from notetaker.notes import picture, render, summarizers
from notetaker.registry import Registry, RendererSpec, SummarizerSpec


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


@hookimpl
def notetaker_register_summarizers(register: Registry[SummarizerSpec]) -> None:
    register.add(
        SummarizerSpec(
            "extractive", summarizers.extractive, "lines quoted from the transcript (offline)"
        )
    )
    register.add(
        SummarizerSpec(
            "llm",
            summarizers.llm,
            "summary, decisions, action items, open questions from an OpenAI-compatible API",
        )
    )
