"""``mnistlab evaluate RUN``: metrics, confusion matrix and mistakes of a trained run, its
calibration (fitted on its validation part, stored in calibration.json) and, with ``--ood``,
how well it tells digits from things that are not; or test-set predictions from any framework.

    mnistlab evaluate runs/20260101-120000-notebook
    mnistlab evaluate runs/20260101-120000-notebook --ood
    mnistlab evaluate runs/20260101-120000-notebook --robustness   # where it breaks
    mnistlab evaluate keras_preds.npy --dataset mnist       # labels (N,) or probabilities (N, 10)
    mnistlab evaluate model.onnx --dataset mnist --pixels unit
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnistlab.cli import options

ROBUSTNESS = typer.Option(
    False,
    "--robustness",
    help="Also measure where it breaks: accuracy under 12 corruptions at 3 severities and "
    "under the FGSM attack, on a seeded subset of the test set (see --robustness-images).",
)
ROBUSTNESS_IMAGES = typer.Option(
    2000, "--robustness-images", metavar="N", min=1, help="Test images the card uses."
)


def evaluate(
    run: Path = typer.Argument(
        ...,
        metavar="RUN",
        help="Run folder written by `mnistlab train`; or a .npy of test-set predictions "
        "(labels (N,) or probabilities (N, classes), in the test set's order) or an .onnx model.",
    ),
    split: str = typer.Option(
        "test",
        "--split",
        metavar="test|val",
        help="test, or val (the validation part a run held out in training).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FOLDER",
        help="Where to write the figures.",
        show_default="the run folder; runs/evaluate-<file name> for .npy and .onnx",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        metavar="NAME",
        help="Whose test set .npy and .onnx predictions are of (default: full MNIST, else the "
        "bundled sample).",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="FOLDER", help="Folder holding the dataset's four files."
    ),
    pixels: str = options.pixels(),
    ood: bool = typer.Option(
        False,
        "--ood",
        help="Also measure 'not a digit I know': false alarms on the test digits, catch rate "
        "on letters, shapes, scribbles and noise drawn in code (a few seconds).",
    ),
    robustness: bool = ROBUSTNESS,
    robustness_images: int = ROBUSTNESS_IMAGES,
) -> None:
    """Evaluate a run: accuracy and its interval, precision/recall, confusion, R², calibration.

    Per-class precision, recall and F1 (scikit-learn), the confusion matrix, R² of the
    probabilities, and ECE and NLL before and after temperature scaling; --ood and
    --robustness add the out-of-distribution check and the robustness card."""
    from rich.console import Console

    from mnistlab import rundir
    from mnistlab.errors import RunError
    from mnistlab.evaluation import evaluate as ev
    from mnistlab.evaluation import sources

    console = Console()
    if sources.kind_of(run) == "run":
        if dataset is not None or data_dir is not None:
            raise RunError(
                "a run is evaluated on the data it was trained on; drop --dataset/--data-dir"
            )
        if ood:
            _ood_possible(run, split)  # before any work: it needs the run's validation part
        result = ev.evaluate(run, split=split, out=out)
        ev.print_evaluation(result, console)
        if ood:
            from mnistlab.use.nondigits import check_run, print_ood

            result["ood"] = check_run(run)
            ev.merge_metrics(run, split, {"ood": result["ood"]})
            print_ood(result["ood"], console)
        typer.echo(f'saved under "evaluation"."{split}" in {Path(run) / rundir.METRICS}')
        _robustness(run, robustness, robustness_images, out, console)
        return
    _run_only(ood=ood, robustness=robustness)
    result = ev.evaluate(run, split, out, dataset=dataset, data_dir=data_dir, pixels=pixels)
    ev.print_evaluation(result, console)
    typer.echo(f"wrote evaluation.json in {Path(result['figures']['confusion_matrix']).parent}")


def _ood_possible(run: Path, split: str) -> None:
    """One line, before anything is computed, where --ood cannot be measured."""
    from mnistlab import rundir
    from mnistlab.errors import RunError
    from mnistlab.recipe import Recipe

    if split != "test":
        raise RunError("--ood: false alarms are measured on test digits; use --split test")
    if not Recipe.from_toml(Path(run) / rundir.RECIPE).validation_split:
        raise RunError(
            f"{run}: --ood sets its threshold on the run's validation part, and the run held out "
            "none (validation_split = 0); train with a validation_split to use it"
        )


def _run_only(ood: bool, robustness: bool) -> None:
    """Refuse, in one line, what predictions cannot give: both need a run's model."""
    from mnistlab.errors import RunError

    if ood:
        raise RunError("--ood needs a run folder (its model and validation part), not predictions")
    if robustness:
        raise RunError("--robustness needs a run folder (its model), not predictions")


def _robustness(run: Path, asked: bool, images: int, out: Optional[Path], console) -> None:
    """The robustness card of a run, printed and stored, when ``asked``."""
    if not asked:
        return
    from mnistlab import rundir
    from mnistlab.evaluation import robustness as rb

    rb.print_card(rb.evaluate_robustness(run, images=images, out=out), console)
    typer.echo(f'saved under "robustness" in {Path(run) / rundir.METRICS}')


def register(root: typer.Typer) -> None:
    root.command("evaluate")(evaluate)
