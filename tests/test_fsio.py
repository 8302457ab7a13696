"""Atomic writes: a failure mid-write leaves the old file and no temp file behind."""

import pytest

from mnistlab.errors import MnistlabError
from mnistlab.fsio import atomic_path, atomic_write_json, atomic_write_text, make_dirs


def test_write_replaces_whole_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")
    atomic_write_json(tmp_path / "a.txt", {"x": 1})
    assert (tmp_path / "a.txt").read_text() == '{\n  "x": 1\n}\n'


def test_crash_mid_write_keeps_old_content_and_no_temp(tmp_path):
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_creates_missing_parent_folders(tmp_path):
    atomic_write_text(tmp_path / "x" / "y" / "z.txt", "ok")
    assert (tmp_path / "x" / "y" / "z.txt").read_text() == "ok"


def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644


def test_folder_or_file_in_the_way_is_a_one_line_error(tmp_path):
    # `predict --show FOLDER`, `explore --out FILE`: a message, not an IsADirectoryError traceback.
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(MnistlabError, match="is a folder, expected a file name"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(
        MnistlabError, match=r"f\.txt: cannot create this folder, a file is in the way"
    ):
        atomic_write_text(tmp_path / "f.txt" / "a.txt", "x")
    with pytest.raises(MnistlabError, match="a file is in the way"):
        make_dirs(tmp_path / "f.txt" / "sub" / "deeper")
    assert make_dirs(tmp_path / "new" / "sub").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "new"]


def test_a_full_disk_mid_write_keeps_the_old_file_and_names_the_destination(tmp_path, fail_writes):
    import errno

    from mnistlab.errors import FileSystemError

    dest = tmp_path / "d" / "a.json"
    atomic_write_json(dest, {"old": 1})
    fail_writes(tmp_path / "d", errno.ENOSPC)
    with pytest.raises(FileSystemError) as info:
        atomic_write_json(dest, {"new": 2})
    assert str(info.value) == (
        f"{dest}: cannot write: No space left on device; free some disk space and try again"
    )
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert dest.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in dest.parent.iterdir()] == ["a.json"]


def test_dot_dot_is_resolved_before_anything_is_created(tmp_path):
    atomic_write_text(tmp_path / "x" / ".." / "y" / "f.txt", "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y"]
