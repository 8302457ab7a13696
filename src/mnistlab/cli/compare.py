"""``mnistlab compare``: train variants x seeds and print a leaderboard with paired significance.

mnistlab compare --preset beat-the-baseline --seeds 3 --jobs 2
mnistlab compare my-variants.toml --out runs/compare-mine     # run again to resume
mnistlab compare v.toml --storage postgresql://me@db/mnistlab  # on every machine: one worker
mnistlab compare --preset beat-the-baseline --metric ece     # which recipe is most honestly sure?
"""

from __future__ import annotations

from pathlib import Path

import typer

from mnistlab.cli.report import track_option


def compare_command(
    variants_file: Path | None = typer.Argument(
        None,
        metavar="[VARIANTS.toml]",
        help="Variants file: a \\[base] recipe and \\[variants.NAME] tables.",
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="A shipped variants file: beat-the-baseline, scaling-not-learning-rate, "
        "best-mlp-ablation, best-cnn-ablation.",
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Seeds per variant (default: the file's `seeds`, else 3)."
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        help="Worker processes (each run single-threaded unless its recipe sets threads).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Compare folder (default: runs/compare-<name>); an existing one is resumed.",
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Dataset name (default: the base recipe's, else full MNIST or the sample).",
    ),
    train_images: int | None = typer.Option(
        None, "--train-images", help="Use only the first N training images (quick trials)."
    ),
    test_images: int | None = typer.Option(
        None, "--test-images", help="Use only the first N test images (quick trials)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Share the runs between "
        "processes/machines through this study URL "
        "(sqlite:///FILE or postgresql://user@host:port/db).",
    ),
    study: str | None = typer.Option(
        None, "--study", help="Study name with --storage (default: compare-<name>)."
    ),
    heartbeat: int = typer.Option(
        10,
        "--heartbeat",
        help="With --storage: seconds between a "
        "run's heartbeats; silent for 3x this, it is retried.",
    ),
    track: str | None = track_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the leaderboard."),
    metric: str = typer.Option(
        "accuracy",
        "--metric",
        help="What ranks (validation) and is tested (paired, test images): accuracy, or ece "
        "(expected calibration error of the raw softmax, lower is better).",
    ),
) -> None:
    """Compare recipe variants over seeds: validation ranks, paired tests on the test images."""
    from rich.console import Console

    from mnistlab.cli.report import run_tracker, tracking_uri
    from mnistlab.errors import RecipeError
    from mnistlab.experiments import compare as cmp
    from mnistlab.experiments.leaderboard import print_leaderboard

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training

    if (variants_file is None) == (preset is None):
        raise RecipeError(
            "give a variants file or --preset NAME (one of: " + ", ".join(cmp.preset_names()) + ")"
        )
    variants = cmp.load_variants(variants_file) if variants_file else cmp.load_preset(preset)
    console = Console(highlight=False, soft_wrap=True)
    log = None if quiet else console.print
    try:
        board = cmp.compare(
            variants,
            seeds=seeds,
            jobs=jobs,
            out=out,
            dataset=dataset,
            train_images=train_images,
            test_images=test_images,
            storage=storage,
            study=study,
            heartbeat=heartbeat,
            log=log,
            on_run=run_tracker(track_uri, log),
            metric=metric,
        )
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


def register(root: typer.Typer) -> None:
    root.command("compare")(compare_command)
