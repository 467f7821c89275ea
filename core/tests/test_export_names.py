"""Exported tracks are named for their speakers, safely."""

from __future__ import annotations

import pytest

from notetaker.errors import RecordingError
from notetaker.recorder.export import NAME_CHARS, file_name_part, track_file_name


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("alice", "alice"),
        ("Jürgen Müller", "jurgen-muller"),
        ("李雷", "李雷"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c:d*e?f", "a-b-c-d-e-f"),
        ("  .hidden  ", "hidden"),
        ("🙂🙂", "speaker"),
        ("", "speaker"),
        ("dev_ops--team", "dev_ops-team"),
        ("x" * 80, "x" * NAME_CHARS),
    ],
)
def test_a_display_name_becomes_a_file_name_part(name: str, part: str) -> None:
    assert file_name_part(name) == part
    assert "/" not in part and "\\" not in part and not part.startswith(".")


def test_order_name_and_id() -> None:
    assert track_file_name(1, "Alice", 1234) == "1-alice-1234.opus"
    with pytest.raises(RecordingError):
        track_file_name(2, "bob", -5)
