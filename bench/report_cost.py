"""What the report's look inside costs: `mnistlab report` of one run with and without its
sections on what the network learned and where it breaks (templates, attributions, embedding,
robustness card), each in a fresh Python process as a user runs it (imports included), the two
interleaved over --reps repetitions. Prints the median seconds of each and the difference;
goal: the look inside adds <= 3 s for the notebook recipe's run on 2 cores.

    python bench/report_cost.py                      # trains the notebook recipe on the sample
    python bench/report_cost.py runs/2026-...-notebook --reps 7
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402  (bench/_machine.py)

GOAL_S = 3.0
# One report in a fresh process; with "plain", the look-inside sections are left out of the page.
CHILD = """
import sys
from mnistlab.pages import inside_sections, run_page
if sys.argv[3] == "plain":
    run_page.SECTIONS = {
        k: v for k, v in run_page.SECTIONS.items() if k not in inside_sections.SECTIONS
    }
run_page.write(sys.argv[1], sys.argv[2])
"""


def one(run: Path, out: Path, kind: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(run), str(out), kind], check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "run",
        nargs="?",
        type=Path,
        default=None,
        help="a run folder (default: train the notebook recipe on the bundled sample)",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions of each (default 5)")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps: expected a number > 0")
    _machine.header()
    with tempfile.TemporaryDirectory(prefix="mnistlab-report-cost-") as tmp:
        run = args.run
        if run is None:
            from mnistlab import datasets
            from mnistlab.recipe import Recipe
            from mnistlab.training.fit import fit

            run = fit(
                Recipe(), datasets.load("mnist-sample"), out=Path(tmp) / "run", quiet=True
            ).path
        times: dict[str, list[float]] = {"plain": [], "inside": []}
        one(run, Path(tmp) / "warm.html", "inside")  # untimed: the OS's file cache
        for _ in range(args.reps):
            for kind in times:
                times[kind].append(one(run, Path(tmp) / f"{kind}.html", kind))
    plain, full = (float(np.median(times[k])) for k in ("plain", "inside"))
    print(f"report of {run} ({args.reps} reps, fresh processes, median s):")
    print(f"  without the look inside {plain:6.2f}")
    print(f"  with it                 {full:6.2f}")
    extra = full - plain
    print(
        f"  the look inside adds    {extra:6.2f}   goal <= {GOAL_S:.0f} s: "
        f"{'meets' if extra <= GOAL_S else 'misses'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
