"""Opt-outs (and auto-record channels) from the old separate file move into the session
index once, and are never lost on the way."""

from __future__ import annotations

from pathlib import Path

from notetaker.autorecord import AutoChannel, AutoRecordStore
from notetaker.consent import ConsentStore
from notetaker.legacy_stores import LEGACY, MOVED, adopt
from notetaker.recorder import DataLayout, MeetingIndex


def test_old_opt_outs_move_into_the_session_index_once(tmp_path: Path) -> None:
    old = ConsentStore(tmp_path / LEGACY)
    old.set_opted_out(5, 42, True)
    old.set_opted_out(6, 43, True)
    old.close()
    index_path = DataLayout(tmp_path).index_path
    MeetingIndex.open(tmp_path).close()  # the session index, as a running bot has it
    consent = ConsentStore(index_path)
    consent.set_opted_out(5, 44, True)  # one made since
    auto = AutoRecordStore(index_path)
    assert adopt(tmp_path, index_path) == 2
    assert consent.opted_out(5) == {42, 44} and consent.opted_out(6) == {43}
    assert not (tmp_path / LEGACY).exists() and (tmp_path / MOVED).is_file()
    assert adopt(tmp_path, index_path) == 0  # done once
    auto.enable(AutoChannel(5, 7, 8, 42))
    consent.close()
    auto.close()
    # everything is in the one file the index lives in
    again = ConsentStore(index_path)
    assert again.opted_out(5) == {42, 44}
    assert AutoRecordStore(index_path).channels(5) == [AutoChannel(5, 7, 8, 42)]


def test_nothing_to_move(tmp_path: Path) -> None:
    index_path = DataLayout(tmp_path).index_path
    ConsentStore(index_path).close()
    assert adopt(tmp_path, index_path) == 0


def test_the_old_file_stays_until_its_stores_are_open_on_the_index(tmp_path: Path) -> None:
    old = ConsentStore(tmp_path / LEGACY)
    old.set_opted_out(5, 42, True)
    old.close()
    index_path = DataLayout(tmp_path).index_path
    MeetingIndex.open(tmp_path).close()  # no opt_outs table in it yet
    assert adopt(tmp_path, index_path) == 0
    assert (tmp_path / LEGACY).is_file()  # nothing lost, nothing moved
    ConsentStore(index_path).close()
    assert adopt(tmp_path, index_path) == 1
