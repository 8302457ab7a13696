"""The package's shape: stages layered bottom-up with no circle (import-linter's contracts in
pyproject.toml), a short top level, and functions short enough to read in one sitting."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mnistlab"
# The compiled training kernels keep a whole step in one function: numba compiles it as one
# loop nest, and splitting it would cost a call per layer and step.
LONG_BY_DESIGN = {("engines/fast_numba.py", "_steps")}
MAX_LINES = 80


def test_the_layers_and_acyclic_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    p = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_the_top_level_is_short():
    modules = [p.name for p in PACKAGE.iterdir() if p.suffix == ".py"]
    assert len(modules) <= 12, sorted(modules)


def test_no_function_is_longer_than_a_screenful():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and (rel, node.name) not in LONG_BY_DESIGN:
                    long.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)
