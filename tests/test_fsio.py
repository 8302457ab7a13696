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


# ---- bounded reads: a size limit before reading, special files refused unopened -------------
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from mnistlab.errors import RecipeError  # noqa: E402
from mnistlab.fsio import TOML_LIMIT, read_bytes, read_text, read_toml  # noqa: E402

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")


def _within(seconds, fn):
    """fn()'s exception (or None), failing the test if fn is still running after ``seconds``."""
    out = []

    def target():
        try:
            fn()
            out.append(None)
        except Exception as exc:  # the test inspects it
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the read blocked"
    return out[0]


@posix_only
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "recipe.toml"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would wait forever
    exc = _within(10, lambda: read_toml(fifo))
    assert isinstance(exc, RecipeError)
    assert str(exc) == f"{fifo}: is a FIFO, not a regular file; expected a recipe (TOML)"


@posix_only
@pytest.mark.parametrize("reader", ["recipe", "variants", "space"])
def test_dev_zero_is_refused_before_a_byte_is_read(reader):
    from mnistlab.experiments.compare import load_variants
    from mnistlab.experiments.search import load_space
    from mnistlab.recipe import Recipe

    load = {"recipe": Recipe.from_toml, "variants": load_variants, "space": load_space}[reader]
    exc = _within(10, lambda: load("/dev/zero"))
    assert isinstance(exc, RecipeError) and "is a character device, not a regular file" in str(exc)


def test_an_oversized_file_is_refused_from_its_size_naming_the_limit(tmp_path, monkeypatch):
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (TOML_LIMIT + 1))
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    with pytest.raises(RecipeError) as info:
        read_toml(big, "variants file")
    assert str(info.value) == (
        f"{big}: 1,048,577 bytes, more than a variants file (TOML) may hold (1 MiB)"
    )
    assert opened == []  # refused from stat, never opened
    monkeypatch.undo()
    big.write_bytes(b"#" * TOML_LIMIT)  # at the limit: read
    assert read_toml(big) == {}


def test_a_folder_is_refused_as_a_file(tmp_path):
    with pytest.raises(MnistlabError, match=r"is a folder, not a regular file; expected an x"):
        read_text(tmp_path, "an x", 100, MnistlabError)


def test_a_file_longer_than_its_reported_size_is_cut_at_the_limit(tmp_path, monkeypatch):
    # /proc files report size 0, and a file may grow between stat and read: the read stops.
    import types

    f = tmp_path / "a.txt"
    f.write_bytes(b"x" * 200)
    real_stat, real_fstat = os.stat, os.fstat
    tiny = lambda st: types.SimpleNamespace(st_mode=st.st_mode, st_size=10)  # noqa: E731
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: tiny(real_stat(p, *a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: tiny(real_fstat(fd)))
    with pytest.raises(MnistlabError) as info:
        read_bytes(f, "a note", 100, MnistlabError)
    monkeypatch.undo()
    assert str(info.value) == f"{f}: more than a note may hold (100 bytes)"
    assert read_text(f, "a note", 200, MnistlabError) == "x" * 200


def test_missing_and_non_utf8_files_keep_their_own_words(tmp_path):
    # OS failures and decoding are for the caller to word (recipe, run file, ...)
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "nope", "x", 100, MnistlabError)
    (tmp_path / "b.txt").write_bytes(b"\xffabc")
    with pytest.raises(UnicodeDecodeError):
        read_text(tmp_path / "b.txt", "x", 100, MnistlabError)
