"""Which language each speaker is transcribed in.

A meeting is transcribed in the language ``/startnotes language:`` names, else the
configured default; ``auto`` detects it once per speaker from their first utterances
and then keeps it, so one misheard short utterance cannot flip a speaker's language
halfway through a meeting. :func:`decide` is the rule, as data plus a pure function.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from notetaker.errors import ConfigError

#: The languages Whisper models know (ISO 639-1, plus ``haw`` and ``yue``).
_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr "
    "ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th "
    "tk tl tr tt uk ur uz vi yi yo zh yue"
)
WHISPER_LANGUAGES = frozenset(_CODES.split())
AUTO = "auto"


def parse_language(value: str | None) -> str | None:
    """A language code as users type it: ``None``/``""``/``auto`` -> None (detect)."""
    code = (value or "").strip().lower()
    if code in ("", AUTO):
        return None
    if code not in WHISPER_LANGUAGES:
        raise ConfigError(
            f"unknown language {value!r}: use a code such as en, de, fr or es, or auto to "
            "detect it per speaker"
        )
    return code


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """When a speaker's detected language is kept.

    Detections from utterances with less than ``min_speech_s`` of speech are not
    counted (a cough tells nothing); one detection at ``confident`` or more decides;
    otherwise, after ``votes`` detections, the language with the most summed probability.
    """

    min_speech_s: float = 1.0
    confident: float = 0.8
    votes: int = 3


def decide(detections: Sequence[tuple[str, float]], policy: DetectionPolicy) -> str | None:
    """The language to keep for a speaker, from (language, probability) detections of
    their first utterances; None while undecided."""
    for language, probability in detections:
        if probability >= policy.confident:
            return language
    if len(detections) < policy.votes:
        return None
    totals: dict[str, float] = {}
    for language, probability in detections:
        totals[language] = totals.get(language, 0.0) + probability
    return max(totals, key=lambda lang: (totals[lang], lang))


@dataclass
class SpeakerLanguages:
    """The languages of one meeting's speakers. ``requested`` None means auto."""

    requested: str | None
    policy: DetectionPolicy = field(default_factory=DetectionPolicy)
    _decided: dict[int, str] = field(default_factory=dict)
    _seen: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def language_for(self, user_id: int) -> str | None:
        """The language to transcribe ``user_id`` in; None: detect."""
        if self.requested is not None:
            return self.requested
        with self._lock:
            return self._decided.get(user_id)

    def observe(
        self, user_id: int, speech_s: float, language: str | None, probability: float
    ) -> str | None:
        """An utterance of ``user_id`` was transcribed in (or detected as) ``language``;
        returns the speaker's language if this observation decided it."""
        if self.requested is not None or language is None or speech_s < self.policy.min_speech_s:
            return None
        with self._lock:
            if user_id in self._decided:
                return None
            seen = self._seen.setdefault(user_id, [])
            seen.append((language, probability))
            chosen = decide(seen, self.policy)
            if chosen is not None:
                self._decided[user_id] = chosen
                del self._seen[user_id]
            return chosen
