"""``mnistlab compare``: train variants x seeds and print a leaderboard with paired significance,
or compare runs already trained (and predictions from any framework) on the same test images.

mnistlab compare --preset beat-the-baseline --seeds 3 --jobs 2
mnistlab compare --preset beat-the-baseline --epochs 2 --seeds 2  # recipe flags set the base
mnistlab compare my-variants.toml --out runs/compare-mine     # run again to resume
mnistlab compare v.toml --storage postgresql://me@db/mnistlab  # on every machine: one worker
mnistlab compare runs/A runs/B keras_preds.npy model.onnx --dataset mnist   # already trained
mnistlab compare --preset beat-the-baseline --metric ece     # which recipe is most honestly sure?
mnistlab compare --preset beat-the-baseline --metric robust_accuracy  # which breaks least?
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from mnistlab.cli import options
from mnistlab.cli.recipe_flags import overrides_from_flags, with_recipe_flags

VARIANTS_EXAMPLE = """\
    name = "adam-vs-sgd"         # names the folder: runs/compare-adam-vs-sgd
    baseline = "notebook"        # the variant the others are tested against
    seeds = 3
    \\[base]                       # recipe fields (or preset = "NAME"); the flags below too
    epochs = 5
    \\[variants.notebook]          # an empty table: the base itself
    \\[variants.adam]
    optimizer = "adam"
    lr = 0.001"""


def compare_command(
    inputs: Optional[list[Path]] = typer.Argument(
        None,
        metavar="INPUT",
        help="A variants file (VARIANTS.toml, see above); or two or more trained models to "
        "compare on the same test images: RUN folders, .npy predictions (labels (N,) or "
        "probabilities (N, classes), in the test set's order), .onnx models.",
    ),
    preset: Optional[str] = typer.Option(
        None, "--preset", metavar="NAME", help="A shipped variants file (`mnistlab presets`)."
    ),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", metavar="N", help="Seeds per variant (default: the file's, else 3)."
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        metavar="N",
        help="Worker processes (each run single-threaded unless its recipe sets threads).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="FOLDER",
        help="Compare folder (default: runs/compare-<name>); an existing one is resumed. "
        "Comparing trained models: where to write comparison.json (default: nowhere).",
    ),
    train_images: Optional[int] = options.images("train"),
    test_images: Optional[int] = options.images("test"),
    storage: Optional[str] = options.storage("none: this process trains every run"),
    study: Optional[str] = options.study("compare-<name>, with --storage"),
    heartbeat: int = options.heartbeat("run (with --storage)"),
    pixels: str = options.pixels(),
    track: Optional[str] = options.track(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the leaderboard."),
    metric: str = typer.Option(
        "accuracy",
        "--metric",
        metavar="accuracy|ece|robust_accuracy",
        help="What ranks (validation) and is tested (paired, test images): accuracy, ece (raw "
        "softmax's calibration error, lower is better) or robust_accuracy (under corruptions).",
    ),
    **fields: Any,
) -> None:
    """Compare recipe variants over seeds, or models already trained, on the same test images.

    Variants are ranked on validation and tested against the baseline with paired tests on the
    test images (McNemar, Holm-corrected)."""
    changes = overrides_from_flags(fields)
    dataset = changes.pop("dataset", None)  # the data every run sees, not a recipe change
    training = dict(
        seeds=seeds,
        jobs=jobs,
        out=out,
        dataset=dataset,
        train_images=train_images,
        test_images=test_images,
        storage=storage,
        study=study,
        heartbeat=heartbeat,
        metric=metric,
    )
    if inputs and not (len(inputs) == 1 and inputs[0].suffix == ".toml"):
        return _trained(inputs, preset, changes, training, pixels, track, quiet)
    _variants_compare(_load_variants(inputs, preset, changes), training, track, quiet)


compare_command.__doc__ = "\n\n".join(
    [
        inspect.cleandoc(compare_command.__doc__),
        "A variants file (TOML):",
        VARIANTS_EXAMPLE,
        "Every recipe flag sets that field of the base; a variant's own fields still win. "
        "Trained models are compared with the first as the baseline, on the same test images "
        "(--dataset names them for .npy and .onnx inputs).",
    ]
)


def _load_variants(inputs, preset, changes):
    from mnistlab.errors import RecipeError
    from mnistlab.experiments import compare as cmp

    if bool(inputs) == (preset is not None):
        raise RecipeError(
            "give a variants file or --preset NAME (one of: " + ", ".join(cmp.preset_names()) + ")"
        )
    if inputs:
        return cmp.load_variants(inputs[0], changes)
    return cmp.load_preset(preset, changes)


def _variants_compare(variants, options: dict[str, Any], track, quiet: bool) -> None:
    from rich.console import Console

    from mnistlab.cli.finish import run_tracker, tracking_uri
    from mnistlab.experiments import compare as cmp
    from mnistlab.experiments.leaderboard import print_leaderboard

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training
    console = Console(highlight=False, soft_wrap=True)
    log = None if quiet else console.print
    try:
        board = cmp.compare(variants, **options, log=log, on_run=run_tracker(track_uri, log))
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: run the same command again to continue (finished runs are kept)", err=True
        )
        raise typer.Exit(code=130) from None
    print_leaderboard(board, console)
    console.print(
        f"wrote leaderboard.csv, leaderboard.json, leaderboard.png in {board['folder']}"
        + (f"; report: {board['report']}" if board.get("report") else "")
    )


def _trained(inputs, preset, changes, training, pixels, track, quiet) -> None:
    """Compare trained models on the same test images: nothing is trained, so no recipe or
    training input but --dataset and --data-dir (where their test images are)."""
    from rich.console import Console

    from mnistlab.errors import RecipeError
    from mnistlab.experiments import paired

    data_dir = changes.pop("data_dir", None)
    defaults = {"jobs": 1, "heartbeat": 10, "metric": "accuracy"}
    given = (
        ([f"--preset {preset}"] if preset else [])
        + ["--" + k.replace("_", "-") for k in changes]
        + [
            "--" + k.replace("_", "-")
            for k, v in training.items()
            if k not in ("out", "dataset") and v is not None and v != defaults.get(k)
        ]
        + (["--track"] if track else [])
    )
    if given:
        raise RecipeError(
            "comparing trained models trains nothing, so it takes no recipe or training "
            "input; drop " + ", ".join(given)
        )
    console = Console(highlight=False, soft_wrap=True)
    result = paired.compare_trained(
        inputs,
        dataset=training["dataset"],
        data_dir=data_dir,
        pixels=pixels,
        out=training["out"],
        log=None if quiet else console.print,
    )
    paired.print_comparison(result, console)


def register(root: typer.Typer) -> None:
    root.command("compare")(with_recipe_flags(compare_command, skip=("name",)))
