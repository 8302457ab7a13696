"""notebooks/walkthrough.py runs top to bottom as a plain script and tells the exercise's story:
raw pixels fail (chance accuracy, health warning), standardized inputs work."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WALKTHROUGH = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.py"


def _accuracy(output: str, name: str) -> float:
    m = re.search(rf"^==> {re.escape(name)}: test accuracy (\d\.\d+)", output, re.MULTILINE)
    assert m, f"no test accuracy printed for {name!r}:\n{output[-3000:]}"
    return float(m.group(1))


def test_walkthrough_is_a_percent_format_notebook():
    text = WALKTHROUGH.read_text(encoding="utf-8")
    cells = re.split(r"^# %%", text, flags=re.MULTILINE)[1:]
    markdown = [c for c in cells if c.startswith(" [markdown]")]
    assert len(markdown) >= 8 and len(cells) - len(markdown) >= 8
    for cell in markdown:  # markdown cells hold only comment lines, so the script still runs
        body = [ln for ln in cell.splitlines()[1:] if ln.strip()]
        assert body and all(ln.startswith("#") for ln in body), cell[:200]


@pytest.mark.slow  # ~20-40 s: eight short trainings (two on the torch engine) and the figures
def test_walkthrough_quick_run_shows_failure_then_success(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, MNISTLAB_HOME=str(tmp_path / "home"), MNISTLAB_WALKTHROUGH_QUICK="1",
               MNISTLAB_WALKTHROUGH_OUT=str(out), MNISTLAB_MIRRORS="http://127.0.0.1:9/",
               COLUMNS="120")
    p = subprocess.run([sys.executable, str(WALKTHROUGH)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    text = p.stdout

    assert "dataset mnist-sample" in text and "quick mode: True" in text
    raw, fixed = _accuracy(text, "raw pixels"), _accuracy(text, "standardized")
    assert raw < 0.3 < 0.8 < fixed, (raw, fixed)
    # The health check names the notebook's cause for the raw run, and stays silent after the fix.
    assert re.search(r"^health check: epoch 1: .*unscaled raw pixels", text, re.MULTILINE)
    assert "health check warnings: none" in text
    m = re.search(r"a batch of inputs has mean (-?\d\.\d+) and std (\d\.\d+)", text)
    assert m and abs(float(m.group(1))) < 0.1 and abs(float(m.group(2)) - 1) < 0.1
    for variant in ("baseline (sgd)", "adam, lr 0.001", "l2 1e-4", "dropout 0.2", "batch norm"):
        assert _accuracy(text, f"variant {variant}") > 0.5, variant
    r2 = re.search(r"^R² of probabilities vs one-hot targets: (-?\d\.\d+)", text, re.MULTILINE)
    assert r2 and 0.5 < float(r2.group(1)) <= 1.0
    assert "R² on class labels makes no sense" in text
    assert re.search(r"^true digit (\d); the model says \1 ", text, re.MULTILINE)

    for name in ("class_balance", "pixel_histogram", "samples"):
        assert (out / "explore" / f"{name}.png").stat().st_size > 1000
    assert (out / "evaluation" / "confusion_matrix_test.png").is_file()
    assert (out / "runs" / "raw-pixels" / "model.safetensors").is_file()
    assert not (tmp_path / "walkthrough-out").exists()  # everything went where it was told
