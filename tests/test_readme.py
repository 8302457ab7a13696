"""README.md, run as a newcomer would run it: its set-up line's training, the "first five
minutes" commands, every row of the tour (command and Python), its links, and its pictures
(made again by scripts/make_screenshots.py and compared in size and layout, not pixel for pixel).

Everything runs offline on the bundled sample, in a temporary folder; `mnistlab serve` (which
runs until stopped) is started, asked /health, and stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOUR = re.search(r"\n\| step \| command \| Python \|\n\|[-|]+\|\n(.*?)\n\n", README, re.S)


def bash_blocks() -> list[list[str]]:
    return [b.strip("\n").splitlines() for b in re.findall(r"```bash\n(.*?)```", README, re.S)]


def tour() -> list[tuple[str, str, str]]:
    rows = []
    for line in TOUR.group(1).splitlines():
        step, command, python = [c.strip() for c in line.strip("|").split(" | ")]
        rows.append((step, command.strip("`"), python.strip("`")))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_8000(text: str) -> str:
    """The README serves on 8000; where something else holds it, the same line on a free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8000))
            return text
        except OSError:
            return text.replace("8000", str(_free_port()))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    monkeypatch.delenv("MNISTLAB_RUNS_DIR", raising=False)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _bash(script: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def _serving(cmd: list[str], cwd: Path, port: int) -> None:
    """Start a serve command, wait for /health, stop it."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert r.status == 200
                    return
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer /health"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_set_up_block_is_two_lines_and_the_first_trains(workdir):
    install, test = bash_blocks()[0]
    assert install.startswith("pip install torch==2.13.0 -e . && ")
    assert test == "pip install torch==2.13.0 -e '.[test]' && pytest"  # what .ci/run runs
    p = _bash(install.split(" && ", 1)[1], workdir)
    assert p.returncode == 0, p.stderr
    assert "sample" in p.stdout.splitlines()[0]  # offline: says it trains on the sample
    assert len(list((workdir / "runs").iterdir())) == 1


def test_the_first_five_minutes(workdir):
    lines = [line.split("  #")[0].strip() for line in bash_blocks()[1]]
    serve = [line for line in lines if line.startswith("mnistlab serve")]
    script = "\n".join(line for line in lines if line not in serve)
    p = _bash(script + '\necho "RUN=$RUN"', workdir)
    assert p.returncode == 0, p.stderr[-3000:]
    run = Path(p.stdout.strip().splitlines()[-1].split("=", 1)[1])
    assert (workdir / "explore" / "report.html").is_file()
    assert (run / "report.html").is_file() and (run / "calibration.json").is_file()
    (failed,) = [d for d in (workdir / "runs").iterdir() if d.name.endswith("normalize-none")]
    assert "failed its health check" in (failed / "report.html").read_text(encoding="utf-8")
    port = _free_port()
    (line,) = serve
    command = line.replace('"$RUN"', str(run)).split() + ["--port", str(port)]
    _serving(command, workdir, port)


def test_every_command_of_the_tour(workdir):
    trained = _bash("mnistlab train --quiet", workdir)
    assert trained.returncode == 0, trained.stderr
    run = trained.stdout.strip()
    for step, command, _ in tour():
        if command.startswith("jupyter lab"):  # opens an editor: tests/test_notebooks.py runs it
            assert (ROOT / command.split()[-1]).is_file()
            continue
        line = _port_8000(command).replace('"$RUN"', run)
        if command.startswith("mnistlab serve"):
            _serving(line.split(), workdir, int(line.rsplit(" ", 1)[1]))
            continue
        p = _bash(line, workdir)
        assert p.returncode == 0, f"{step}: {command}\n{p.stderr[-3000:]}"


def test_every_python_line_of_the_tour(workdir):
    import mnistlab

    namespace: dict = {"mnistlab": mnistlab, "np": np}
    for _step, _, python in tour():
        if python.startswith("mnistlab.serve("):  # runs until stopped: in its own process
            port = _free_port()
            code = f"import mnistlab; mnistlab.serve({str(namespace['run'].path)!r}, port={port})"
            _serving([sys.executable, "-c", code], workdir, port)
            continue
        exec(python, namespace)
    assert namespace["run"].recipe.epochs == 8 and namespace["metrics"]["n"] == 2000
    assert namespace["summary"]["classes"]["train"]["n"] == 10000


def test_links_point_at_files_that_exist():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (page.parent / target).exists(), (page.name, target)
    assert len(README.splitlines()) <= 150


def test_the_pictures_are_current(tmp_path):
    if not Path("/usr/bin/chromium").exists():  # CI installs it and makes its absence a failure
        message = "/usr/bin/chromium is missing (Debian package chromium)"
        if os.environ.get("MNISTLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and MNISTLAB_REQUIRE_SERVICES=1")
        pytest.skip(message)
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_screenshots.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    from PIL import Image

    for committed in sorted((ROOT / "docs" / "img").glob("*.png")):
        fresh = tmp_path / committed.name
        assert fresh.is_file(), f"{committed.name} is no longer made"
        a, b = Image.open(committed), Image.open(fresh)
        assert a.size == b.size, committed.name
        # layout: the two pictures' 40x30 grey thumbnails agree (dates, paths and digits of a
        # number may differ; a section moved, added or removed does not pass)
        ta = np.asarray(a.convert("L").resize((40, 30)), np.float64)
        tb = np.asarray(b.convert("L").resize((40, 30)), np.float64)
        assert np.corrcoef(ta.ravel(), tb.ravel())[0, 1] > 0.9, committed.name
    assert {f.name for f in tmp_path.glob("*.png")} == {
        f.name for f in (ROOT / "docs" / "img").glob("*.png")
    }


def test_the_recipe_fields_page_is_written_from_the_code():
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
