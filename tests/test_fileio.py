"""vjepa_fast.fileio: the one atomic writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vjepa_fast.fileio import atomic_write_bytes, atomic_write_text, temp_path


def test_atomic_write_replaces_whole_and_leaves_nothing(tmp_path):
    p = tmp_path / "meta.json"
    assert atomic_write_text(p, "old") == p and p.read_text() == "old"
    atomic_write_bytes(p, b"new, longer content")
    assert p.read_bytes() == b"new, longer content"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["meta.json"]
    assert temp_path(p).parent == tmp_path and temp_path(p).name.startswith(".meta.json.tmp-")


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "state.json"
    atomic_write_text(p, "complete")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(p, "torn")
    assert p.read_text() == "complete"  # the target was never touched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["state.json"]  # and the temporary file is gone


def test_read_path_list(tmp_path):
    from vjepa_fast.fileio import read_path_list

    f = tmp_path / "lists" / "a.txt"
    f.parent.mkdir()
    f.write_text("# comment\n\nrel/one.mp4 3.0\n/abs/two\t1\nthree.mp4,2\n  ~/four  \n")
    assert read_path_list(f) == [str(f.parent / "rel/one.mp4"), "/abs/two", str(f.parent / "three.mp4"),
                                 str(Path("~/four").expanduser())]
