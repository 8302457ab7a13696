"""The ``mnistlab`` command: a thin typer layer; every command calls one function of the
Python API."""

from __future__ import annotations

import warnings

import typer

from mnistlab._version import __version__
from mnistlab.cli import compare as _compare
from mnistlab.cli import data as _data
from mnistlab.cli import evaluate as _evaluate
from mnistlab.cli import explore as _explore
from mnistlab.cli import export as _export
from mnistlab.cli import predict as _predict
from mnistlab.cli import presets as _presets
from mnistlab.cli import report as _report
from mnistlab.cli import runs as _runs
from mnistlab.cli import search as _search
from mnistlab.cli import serve as _serve
from mnistlab.cli import train as _train
from mnistlab.errors import MnistlabError
from mnistlab.fsio import fs_error

app = typer.Typer(
    name="mnistlab",
    help="The MNIST deep-learning workflow: data, explore, train, runs, evaluate, compare, "
    "predict, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnistlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """The MNIST deep-learning workflow: data, explore, train, runs, evaluate, compare, predict."""


app.add_typer(_data.app, name="data")
_explore.register(app)
_train.register(app)
_runs.register(app)
_presets.register(app)
_evaluate.register(app)
_compare.register(app)
_search.register(app)
_predict.register(app)
_report.register(app)
_serve.register(app)
_export.register(app)


def main() -> None:
    # Not standalone: typer would print a bad flag value as a multi-line box; a user error is
    # one line here, as for MnistlabError (typer then returns exit codes instead of exiting).
    try:
        from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click
    except ImportError:  # older typer: click itself
        from click.exceptions import UsageError

        NoArgsIsHelpError = ()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = click_command()(standalone_mode=False)
    except MnistlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except OSError as exc:
        # The last net for a file-system error that no writer turned into a message itself.
        if exc.filename is None:
            raise
        typer.echo(f"error: {fs_error(exc, doing='use')}", err=True)
        raise SystemExit(2) from None
    except MemoryError:
        typer.echo(
            "error: out of memory; use a smaller recipe (hidden, batch_size) or free "
            "memory and try again",
            err=True,
        )
        raise SystemExit(2) from None
    except NoArgsIsHelpError as exc:  # bare `mnistlab` / `mnistlab data`: the help is the answer
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except UsageError as exc:
        command = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{command}", err=True)
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def click_command():
    """The click command of ``app``, its help in words rather than Python types: an option
    shows what it takes (N, X, FILE, RUN; a flag nothing) and an argument its name alone."""
    import typer.main

    root = typer.main.get_command(app)
    _plain_help(root)
    return root


def _plain_help(cmd) -> None:
    helper = cmd.get_help_option(cmd.context_class(cmd))  # made once, then kept by the command
    for param in [*cmd.params, *([helper] if helper is not None else [])]:
        if param.param_type_name == "argument":
            # typer prints an argument's type beside its name (<path>, <list[Path]>); the
            # names (RUN, IMAGE..., FOLDER) say what they take
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None:
            param.metavar = "" if getattr(param, "is_flag", False) else _metavar(param)
    for sub in getattr(cmd, "commands", {}).values():
        _plain_help(sub)


def _metavar(param) -> str | None:
    """N, X, PATH or TEXT for an option declared without a metavar (None: leave it to typer)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:  # an older typer: click's own (INTEGER, TEXT) says it in words
        return None
    if getattr(descriptor, "is_path", False):
        return "PATH"
    annotation = getattr(descriptor, "annotation", None)
    return {int: "N", float: "X", str: "TEXT"}.get(annotation)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (e.g. a cache that cannot be written) as the CLI's own one line."""
    text = " ".join(str(message).split())
    typer.echo(f"warning: {text}", err=True)
