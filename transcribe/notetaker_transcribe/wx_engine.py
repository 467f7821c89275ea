"""The WhisperX engine: batched faster-whisper behind pyannote VAD, for GPUs.

whisperx (and torch) are imported only when a model is loaded. Its pyannote VAD model
ships inside the whisperx wheel, so ``vad_method="pyannote"`` works offline; its
Silero option fetches from the network and is not used. Word alignment (wav2vec2)
is off unless ``align`` is set, because it downloads a model per language. There is
no diarization: every Discord user is recorded as their own track.

A batch of utterances is decoded together: pyannote finds the speech in each, the
speech chunks of all utterances that share a language go through the pipeline's
``__call__`` in batches of :attr:`WhisperXTranscriber.batch_size` (the GPU decodes them
side by side), and the guard judges each chunk's text. WhisperX decodes without
timestamps, so a segment is one VAD chunk and carries no word times unless aligned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker.transcript import (
    PCM_RATE,
    Segment,
    Transcriber,
    UtteranceAudio,
    UtteranceResult,
    Word,
)
from notetaker_transcribe.fw_engine import pcm_to_float, token_budget
from notetaker_transcribe.guard import Candidate, Rejections, compression_ratio
from notetaker_transcribe.models import resolve_model
from notetaker_transcribe.options import EngineOptions, is_english_only, language_for

log = logging.getLogger(__name__)

#: Longest stretch whisperx decodes as one item (Whisper's window).
CHUNK_S = 30


def _whisperx() -> Any:
    try:
        import whisperx
    except ImportError as exc:
        raise TranscriptionError(
            "the whisperx engine needs whisperx: `pip install notetaker-transcribe[whisperx]` "
            '(or use transcriber = "faster-whisper")'
        ) from exc
    return whisperx


def decode_with_no_speech(
    model: Any, features: Any, tokenizer: Any, options: Any, max_new_tokens: int | None = None
) -> dict[str, list[Any]]:
    """whisperx 3.8.6's ``WhisperModel.generate_segment_batched``, also returning each
    item's ``no_speech_prob``: the guard's strongest evidence, which CTranslate2 computes
    in the same decoding step when asked and whisperx does not ask for.

    ``max_new_tokens`` caps a decoding loop (see :func:`fw_engine.token_budget`).
    """
    prompt = model.get_prompt(
        tokenizer,
        [],
        without_timestamps=options.without_timestamps,
        prefix=options.prefix,
        hotwords=options.hotwords,
    )
    encoder_output = model.encode(features)
    results = model.model.generate(
        encoder_output,
        [prompt] * features.shape[0],
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        max_length=min(model.max_length, len(prompt) + (max_new_tokens or model.max_length)),
        suppress_blank=options.suppress_blank,
        suppress_tokens=options.suppress_tokens,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
        repetition_penalty=options.repetition_penalty,
        return_scores=True,
        return_no_speech_prob=True,
    )
    texts, logprobs, no_speech = [], [], []
    for res in results:
        tokens = res.sequences_ids[0]
        # As whisperx does: the score is length-normalised; undo it, count the EOT too.
        cumulative = res.scores[0] * (len(tokens) ** options.length_penalty)
        logprobs.append(cumulative / (len(tokens) + 1))
        texts.append(tokenizer.tokenizer.decode([t for t in tokens if t < tokenizer.eot]))
        no_speech.append(float(res.no_speech_prob))
    return {"text": texts, "avg_logprob": logprobs, "no_speech_prob": no_speech}


def _guarded_pipeline(pipeline: Any) -> Any:
    """The loaded FasterWhisperPipeline as a subclass whose forward pass is
    :func:`decode_with_no_speech`; everything else (batching, VAD) is whisperx's."""
    base = type(pipeline)

    class GuardedPipeline(base):  # type: ignore[valid-type, misc]
        #: Set per call by the engine: the budget of the longest chunk decoded.
        max_new_tokens: int | None = None

        def _forward(self, model_inputs: dict[str, Any]) -> dict[str, list[Any]]:
            return decode_with_no_speech(
                self.model,
                model_inputs["inputs"],
                self.tokenizer,
                self.options,
                self.max_new_tokens,
            )

    return GuardedPipeline(
        model=pipeline.model,
        vad=pipeline.vad_model,
        vad_params=pipeline._vad_params,
        options=pipeline.options,
        tokenizer=pipeline.tokenizer,
        language=pipeline.preset_language,
        suppress_numerals=pipeline.suppress_numerals,
    )


@dataclass(slots=True)
class _Work:
    """One utterance on its way through a batch."""

    utterance: UtteranceAudio
    audio: Any
    language: str | None
    probability: float
    chunks: list[tuple[float, float]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    rejections: Rejections = field(default_factory=Rejections)


class WhisperXTranscriber(Transcriber):
    """Transcribes batches of utterances with WhisperX's batched pipeline."""

    name = "whisperx"

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._pipeline: Any = None
        self._align: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._english_only = is_english_only(self.options.model)
        self._device = self.options.device
        self.batch_size = self._batch_size_on(self._device)

    def _batch_size_on(self, device: str) -> int:
        # A CPU decodes a batch no faster than its items one by one and a batch waits
        # for its slowest item; a GPU decodes a batch in about the time of one.
        if device == "auto":
            device, _ = self.options.device_and_compute()
        return max(1, self.options.batch_size) if device == "cuda" else 1

    def load(self) -> Any:
        """Resolve the model and build the pipeline (once)."""
        with self._lock:
            if self._pipeline is None:
                opts = self.options
                path = resolve_model(opts.model, opts.data_dir, offline=opts.offline)
                wx = _whisperx()
                device, compute = opts.device_and_compute()
                try:
                    pipeline = wx.load_model(
                        str(path),
                        device,
                        compute_type=compute,
                        # No preset language: each batch sets the tokenizer it needs.
                        language=None,
                        asr_options={"beam_size": opts.beam_size},
                        vad_method="pyannote",
                        local_files_only=True,
                        threads=opts.threads,
                    )
                    self._pipeline = _guarded_pipeline(pipeline)
                except Exception as exc:
                    raise ModelResolutionError(
                        f"whisperx cannot load {path}: {type(exc).__name__}: {exc}"
                    ) from exc
                self._english_only = (
                    self._english_only or not self._pipeline.model.model.is_multilingual
                )
                self._device = device
                self.batch_size = self._batch_size_on(device)
                log.info("whisperx model %s loaded from %s on %s", opts.model, path, device)
            return self._pipeline

    def language_for(self, utterance: UtteranceAudio) -> str | None:
        """The language ``utterance`` is decoded in; None: detect it."""
        return language_for(
            utterance.language, self.options.language, english_only=self._english_only
        )

    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        pipeline = self.load()
        try:
            work = [self._prepare(pipeline, u) for u in batch]
            by_language: dict[str, list[tuple[_Work, tuple[float, float]]]] = {}
            for item in work:
                if item.chunks and item.language is None:
                    item.language, item.probability = self._detect(pipeline, item)
                for chunk in item.chunks:
                    by_language.setdefault(str(item.language), []).append((item, chunk))
            for language, chunks in by_language.items():
                self._decode(pipeline, language, chunks)
            return [self._finish(item) for item in work]
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(
                f"whisperx failed on a batch of {len(batch)} utterance(s): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _prepare(self, pipeline: Any, utterance: UtteranceAudio) -> _Work:
        """Decode the PCM and find its speech with pyannote, as whisperx's own
        ``transcribe`` does (chunks of at most 30 s, merged across short pauses)."""
        language = self.language_for(utterance)
        item = _Work(utterance, pcm_to_float(utterance.pcm), language, 1.0 if language else 0.0)
        if len(item.audio) == 0:
            return item
        vad = pipeline.vad_model
        found = vad({"waveform": vad.preprocess_audio(item.audio), "sample_rate": PCM_RATE})
        params = pipeline._vad_params
        merged = vad.merge_chunks(
            found, CHUNK_S, onset=params["vad_onset"], offset=params["vad_offset"]
        )
        item.chunks = [(float(c["start"]), float(c["end"])) for c in merged]
        return item

    def _detect(self, pipeline: Any, item: _Work) -> tuple[str, float]:
        """The language of an utterance's first speech chunk, with its probability
        (whisperx's own ``detect_language`` gives no probability)."""
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        start, end = item.chunks[0]
        audio = item.audio[round(start * PCM_RATE) : round(end * PCM_RATE)][:N_SAMPLES]
        model = pipeline.model
        n_mels = model.feat_kwargs.get("feature_size") or 80
        features = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_SAMPLES - len(audio))
        token, probability = model.model.detect_language(model.encode(features))[0][0]
        return str(token)[2:-2], float(probability)

    def _decode(
        self, pipeline: Any, language: str, chunks: list[tuple[_Work, tuple[float, float]]]
    ) -> None:
        """Every chunk in ``language`` through the pipeline, ``batch_size`` at a time."""
        from faster_whisper.tokenizer import Tokenizer

        model = pipeline.model
        pipeline.tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        inputs = [
            {"inputs": item.audio[round(s * PCM_RATE) : round(e * PCM_RATE)]}
            for item, (s, e) in chunks
        ]
        pipeline.max_new_tokens = token_budget(max(e - s for _, (s, e) in chunks))
        outputs = pipeline(inputs, batch_size=self.batch_size, num_workers=0)
        for (item, (start, end)), out in zip(chunks, outputs, strict=True):
            item.raw.append({"start": start, "end": end, **{k: _one(v) for k, v in out.items()}})

    def _finish(self, item: _Work) -> UtteranceResult:
        kept: list[dict[str, Any]] = []
        for raw in item.raw:
            text = str(raw.get("text", "")).strip()
            if not text:
                continue
            candidate = Candidate(
                text=text,
                no_speech_prob=raw.get("no_speech_prob"),
                avg_logprob=raw.get("avg_logprob"),
                compression_ratio=compression_ratio(text),
            )
            if item.rejections.keep(candidate):
                kept.append({"start": raw["start"], "end": raw["end"], "text": text})
            else:
                log.debug("guard rejected %r (%s)", text, candidate)
        if self.options.align and kept and item.language:
            kept = self._aligned(kept, item)
        segments = tuple(s for s in (_segment(r, item.utterance) for r in kept) if s)
        return UtteranceResult(
            segments=segments,
            language=item.language,
            language_probability=item.probability,
            rejected=item.rejections.as_tuple(),
        )

    def _aligned(self, raw: list[dict[str, Any]], item: _Work) -> list[dict[str, Any]]:
        language = str(item.language)
        if language not in self._align:
            self._align[language] = _whisperx().load_align_model(
                language_code=language, device=self._device
            )
        model, meta = self._align[language]
        aligned = _whisperx().align(
            raw, model, meta, item.audio, self._device, return_char_alignments=False
        )
        return list(aligned["segments"])


def _one(value: Any) -> Any:
    # With batch_size 1 the pipeline hands back each field as a list of one item.
    return value[0] if isinstance(value, list) else value


def _segment(raw: dict[str, Any], utterance: UtteranceAudio) -> Segment | None:
    text = str(raw.get("text", "")).strip()
    if not text:
        return None
    offset, duration = utterance.start_s, utterance.duration_s
    words = tuple(
        Word(
            start=offset + min(float(w["start"]), duration),
            end=offset + min(float(w["end"]), duration),
            text=str(w["word"]).strip(),
            probability=float(w.get("score", 0.0)),
        )
        # Alignment leaves words it cannot place (numerals, symbols) without times.
        for w in raw.get("words", ())
        if "start" in w and "end" in w and str(w.get("word", "")).strip()
    )
    return Segment(
        user_id=utterance.user_id,
        start=offset + min(float(raw["start"]), duration),
        end=offset + min(float(raw["end"]), duration),
        text=text,
        words=words,
    )
