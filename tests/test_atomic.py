"""Atomic writes: all or nothing, with ordinary file permissions."""
import os
import stat

import pytest

from deepfield import atomic


def test_new_file_gets_the_umask_mode_and_no_temp_is_left(tmp_path):
    target = tmp_path / "a.txt"
    atomic.write_text(target, "hello")
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_leaves_the_old_file_and_its_mode(tmp_path):
    target = tmp_path / "b.txt"
    target.write_text("old")
    target.chmod(0o640)

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, failing)
    assert target.read_text() == "old"
    atomic.write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
