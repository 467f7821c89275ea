"""The hallucination guard: which of Whisper's segments are not speech.

Whisper was trained on subtitled video, so on audio without speech it tends to write
what subtitles say over silence and music: "Thank you.", "Thanks for watching!",
"Subtitles by the Amara.org community", "♪", "[Music]", or one phrase over and over.
Voice activity detection keeps most such audio away from the model, but it lets music,
laughter and loud noise through now and then, and live utterances are short, which is
when Whisper invents most. The guard is the second line: it looks at each segment's
text and at the decoder's own confidence and rejects what is not speech.

Pure: no model, no audio. Engines turn their segments into :class:`Candidate` and keep
those :func:`judge` returns None for; :class:`Rejections` counts the rest by reason for
:attr:`notetaker.transcript.UtteranceResult.rejected`.

Rules, in order (the first that matches is the reason):

``non_speech``
    Nothing is left of the text once music symbols, bracketed or parenthesised
    annotations (``[Music]``, ``(applause)``, ``*laughs*``), lyrics between ``♪``
    and punctuation are removed: Whisper's ways of writing "there was sound here" or
    "this was sung", never words anyone said to the meeting.
``no_speech``
    ``no_speech_prob > 0.6``: the decoder's own no-speech head gives silence more than
    60 %. 0.6 is Whisper's no-speech threshold; Whisper also asks for a low log
    probability before it drops a window, which lets through exactly the fluent
    inventions above (measured with the shipped ``base`` and ``tiny.en`` on noise and
    music: "Thank you.", "You" at 0.58-0.96). Real speech that got past VAD sits far
    below (at most 0.30, for one-word utterances in -30 dBFS room noise).
``low_logprob``
    ``avg_logprob < -1.2``: the text is mostly guessed. Whisper retries at higher
    temperatures below -1.0; a result still under -1.2 after every retry is guesswork.
    Not -1.0 itself: short real words land there (a spoken "Danke!" decodes at -1.07).
``repetitive``
    ``compression_ratio > 2.4`` (Whisper's own bound: text that gzip squeezes that
    well is a loop), or a phrase of 2-8 words 4 times in a row, or one word 6 times
    in a row: loops in texts too short for gzip to see. People repeat a phrase twice,
    three times at most, and a single word ("no, no, no") a little more.
known silence phrase, with weak evidence
    A segment that is, entirely, one of the phrases Whisper writes over silence (see
    :data:`SILENCE_PHRASES`) is rejected at lower bars: ``no_speech_prob > 0.4``
    (reason ``no_speech``) or ``avg_logprob < -0.9`` (``low_logprob``). The phrase alone
    never rejects: people do say "thank you" and "bye", and when they do, the decoder is
    sure of it (measured: a spoken "Thank you." at 0.06-0.17 / -0.6).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

NON_SPEECH = "non_speech"
NO_SPEECH = "no_speech"
LOW_LOGPROB = "low_logprob"
REPETITIVE = "repetitive"
#: Every reason, in the order the rules are tried.
REASONS = (NON_SPEECH, NO_SPEECH, LOW_LOGPROB, REPETITIVE)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The guard's bounds (see the module's docstring for where each comes from)."""

    no_speech_prob: float = 0.6
    min_avg_logprob: float = -1.2
    max_compression_ratio: float = 2.4
    min_repeats: int = 4
    min_word_repeats: int = 6
    max_repeat_unit: int = 8
    # The lower bars for a known silence phrase.
    phrase_no_speech_prob: float = 0.4
    phrase_min_avg_logprob: float = -0.9


DEFAULT = Thresholds()


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the guard needs of one segment. A score an engine does not report is None
    and its rules do not apply."""

    text: str
    no_speech_prob: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None


_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|<[^>]*>|♪[^♪]*♪")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    """Lower-case words, accents folded, punctuation dropped (``don't`` stays whole)."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(folded)


#: Phrases Whisper writes over silence, noise and music (from subtitle credits and
#: sign-offs in its training data), as :func:`words` splits them. Only ever used
#: together with weak acoustic evidence: each is also something people say.
SILENCE_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    tuple(words(p))
    for p in (
        "You",
        "Thank you.",
        "Thank you very much.",
        "Thank you so much.",
        "Thanks.",
        "Thanks for watching!",
        "Thank you for watching.",
        "Thanks for watching and see you next time.",
        "Please subscribe.",
        "Subscribe to my channel.",
        "Bye.",
        "Bye-bye.",
        "Okay.",
        "So.",
        "Oh.",
        "Hmm.",
        "The end.",
        "See you next time.",
        "I'll see you next time.",
        # The same in the other languages it most often does this in.
        "Vielen Dank.",
        "Danke schön.",
        "Untertitel im Auftrag des ZDF, 2017",
        "Untertitelung des ZDF für funk, 2017",
        "Merci.",
        "Sous-titrage ST' 501",
        "Gracias.",
        "Obrigado.",
        "Продолжение следует...",
        "ご視聴ありがとうございました",
    )
)

# Subtitle credits come in many spellings ("Subtitles by ...", "Transcribed by ...",
# "Untertitel von ..."); they are never what a meeting participant says, but a person
# may well talk about subtitles, so these too only count with weak evidence.
_CREDIT = re.compile(
    r"^(subtitles?|captions?|transcri(bed|ption)|translated|untertitel\w*|sous titr\w*)\b.*\b"
    r"(by|from|von|des|par|amara|community)\b"
)


def compression_ratio(text: str) -> float:
    """How well zlib compresses ``text``, as Whisper measures it, for engines that do not
    report it (whisperx): a decoding loop compresses far better than speech."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def spoken_text(text: str) -> str:
    """``text`` without annotations (``[Music]``, ``(laughs)``, ``*sighs*``) and lyrics
    (``♪ ... ♪``)."""
    return _ANNOTATION.sub(" ", text)


def is_non_speech(text: str) -> bool:
    """Whether nothing of ``text`` is words: only music symbols, annotations,
    punctuation, whitespace (letters and digits of any script count as words)."""
    return not words(spoken_text(text))


def longest_run(tokens: list[str], unit: int) -> int:
    """The most times any ``unit`` consecutive tokens occur back to back."""
    best = 1 if len(tokens) >= unit else 0
    for start in range(len(tokens) - 2 * unit + 1):
        pattern = tokens[start : start + unit]
        count, at = 1, start + unit
        while tokens[at : at + unit] == pattern:
            count += 1
            at += unit
        best = max(best, count)
    return best


def is_loop(tokens: list[str], thresholds: Thresholds = DEFAULT) -> bool:
    """Whether some unit of words repeats back to back as often as only a decoding loop
    does (see :class:`Thresholds`)."""
    t = thresholds
    for unit in range(1, t.max_repeat_unit + 1):
        needed = t.min_word_repeats if unit == 1 else t.min_repeats
        if len(tokens) >= unit * needed and longest_run(tokens, unit) >= needed:
            return True
    return False


def is_silence_phrase(text: str) -> bool:
    """Whether ``text`` is entirely one of Whisper's silence phrases or a subtitle credit."""
    tokens = words(spoken_text(text))
    return tuple(tokens) in SILENCE_PHRASES or bool(_CREDIT.match(" ".join(tokens)))


def _above(value: float | None, bound: float) -> bool:
    return value is not None and value > bound


def _below(value: float | None, bound: float) -> bool:
    return value is not None and value < bound


def judge(candidate: Candidate, thresholds: Thresholds = DEFAULT) -> str | None:
    """The reason to reject ``candidate``, or None to keep it."""
    t = thresholds
    if is_non_speech(candidate.text):
        return NON_SPEECH
    if _above(candidate.no_speech_prob, t.no_speech_prob):
        return NO_SPEECH
    if _below(candidate.avg_logprob, t.min_avg_logprob):
        return LOW_LOGPROB
    if _above(candidate.compression_ratio, t.max_compression_ratio):
        return REPETITIVE
    if is_loop(words(spoken_text(candidate.text)), t):
        return REPETITIVE
    if is_silence_phrase(candidate.text):
        if _above(candidate.no_speech_prob, t.phrase_no_speech_prob):
            return NO_SPEECH
        if _below(candidate.avg_logprob, t.phrase_min_avg_logprob):
            return LOW_LOGPROB
    return None


class Rejections:
    """Counts of rejected segments by reason, for ``UtteranceResult.rejected``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, reason: str) -> None:
        self._counts[reason] += 1

    def keep(self, candidate: Candidate, thresholds: Thresholds = DEFAULT) -> bool:
        """Judge ``candidate``; count it if rejected. True to keep it."""
        reason = judge(candidate, thresholds)
        if reason is None:
            return True
        self.add(reason)
        return False

    def as_tuple(self) -> tuple[tuple[str, int], ...]:
        """``((reason, count), ...)`` in :data:`REASONS` order, then any other reason."""
        order = {r: i for i, r in enumerate(REASONS)}
        ranked = sorted(self._counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        return tuple((reason, count) for reason, count in ranked if count)
