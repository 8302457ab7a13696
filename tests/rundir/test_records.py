"""rundir.records, schema, dataset: one bounded, schema-checked reader per run file, so a damaged
piece is one line naming the file for every command that reads it; the dataset record; the one
NaN/inf check of a model's predictions."""

import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest

from mnistlab import datasets, rundir
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.rundir import schema
from mnistlab.training.fit import fit


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of the bundled sample, evaluated (so metrics.json holds an evaluation)."""
    from mnistlab.evaluation.evaluate import evaluate

    out = tmp_path_factory.mktemp("records") / "run"
    recipe = Recipe(dataset="mnist-sample", hidden=[8], epochs=1, batch_size=128)
    fit(recipe, out=out, quiet=True)
    evaluate(out, out=out / "figs")
    return out


@pytest.fixture
def copy(finished, tmp_path):
    def make(name="run"):
        return shutil.copytree(finished, tmp_path / name)

    return make


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "seven.png"
    Image.fromarray(255 - datasets.load("mnist-sample").x_test[0]).save(path)  # ink on paper
    return path


def _cli(monkeypatch, capsys, *args):
    from mnistlab.cli import main

    monkeypatch.setattr(sys, "argv", ["mnistlab", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _replace(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert old in data, (old, data[:300])
    path.write_bytes(data.replace(old, new, 1))


DAMAGES = {
    # file, how, what the one line says
    "non-UTF-8 history": (
        rundir.HISTORY,
        lambda p: _replace(p, b"\n1,", b"\n1\xff,"),
        r"history.csv: not valid CSV \(not UTF-8 text: byte 0xff at offset \d+\)",
    ),
    "epoch inf": (
        rundir.HISTORY,
        lambda p: _replace(p, b"\n1,", b"\ninf,"),
        r"history.csv: line 2: epoch is inf, expected a whole number >= 1",
    ),
    "string accuracy": (
        rundir.METRICS,
        lambda p: p.write_text(
            json.dumps({**json.loads(p.read_text()), "test": {"accuracy": "high"}})
        ),
        r"metrics.json: \['test'\]\['accuracy'\] is 'high', expected a number or null",
    ),
    "list accuracy": (
        rundir.METRICS,
        lambda p: p.write_text(
            json.dumps({**json.loads(p.read_text()), "test": {"accuracy": [1]}})
        ),
        r"metrics.json: \['test'\]\['accuracy'\] is a list, expected a number or null",
    ),
    "100k-deep metrics": (
        rundir.METRICS,
        lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
        r"metrics.json: JSON nested deeper than 32 levels",
    ),
}
COMMANDS = {
    "evaluate": lambda run, image: ["evaluate", run, "--out", run / "figs2"],
    "predict": lambda run, image: ["predict", run, image],
    "export": lambda run, image: ["export", run],
    "serve": lambda run, image: ["serve", run, "--port", "1"],  # refused before it listens
    "resume": lambda run, image: ["train", "--resume", run, "--quiet"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_piece_is_one_line_for_every_command(
    copy, image, monkeypatch, capsys, damage, command
):
    if command == "export":
        pytest.importorskip("onnx")
    run = copy()
    name, spoil, said = DAMAGES[damage]
    spoil(run / name)
    code, out, err = _cli(monkeypatch, capsys, *COMMANDS[command](run, image))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(said, err), err


@pytest.mark.parametrize("damage", DAMAGES)
def test_the_report_names_a_damaged_piece_and_renders_the_rest(copy, damage):
    from mnistlab.pages import run_page

    run = copy()
    name, spoil, said = DAMAGES[damage]
    spoil(run / name)
    html = run_page.write(run).read_text(encoding="utf-8")
    import html as html_lib
    import re

    text = html_lib.unescape(html)
    assert re.search(said, text), damage
    assert "Confusion matrix" in text and "<img" in text  # the rest still renders


# ---- the schemas ----------------------------------------------------------------------------
def test_what_training_and_evaluate_write_passes_the_schemas(finished):
    metrics = rundir.read_metrics(finished / rundir.METRICS)
    assert set(metrics) >= {"train", "test", "health", "evaluation"}
    env = rundir.read_environment(finished / rundir.ENVIRONMENT)
    assert env["engine"] in ("fast", "reference")
    assert schema.depth(metrics) <= schema.MAX_DEPTH


@pytest.mark.parametrize(
    "value,said",
    [
        ({"train": {"epoch": True}}, "['train']['epoch'] is true, expected an integer or null"),
        ({"health": ["ok", 5]}, "['health'][1] is 5, expected a string"),
        (
            {"evaluation": {"test": {"confusion_matrix": [[1, 2], [3, "x"]]}}},
            "['evaluation']['test']['confusion_matrix'][1][1] is 'x', expected an integer",
        ),
        ({"stopped": {"why": 1}}, "['stopped'] is an object, expected a string or null"),
    ],
)
def test_a_schema_names_the_key_the_value_and_what_was_expected(value, said):
    with pytest.raises(RunError) as info:
        schema.check(value, schema.METRICS, "metrics.json")
    assert str(info.value) == f"metrics.json: {said}"
    schema.check({"train": {"epoch": 3}, "newer_key": [1, {"x": None}]}, schema.METRICS, "m")


def test_json_nesting_is_limited_below_the_parser_limit_too(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"a": ' + "[" * 32 + "1" + "]" * 32 + "}")  # 33 levels
    with pytest.raises(RunError, match="nested deeper than 32 levels"):
        rundir.read_json(path)
    path.write_text('{"a": ' + "[" * 31 + "1" + "]" * 31 + "}")
    assert schema.depth(rundir.read_json(path)) == 32


def test_an_oversized_or_special_run_file_is_refused_naming_the_limit(copy):
    run = copy()
    with open(run / rundir.HISTORY, "ab") as fh:
        fh.truncate(rundir.LIMITS[rundir.HISTORY] + 1)  # sparse: no disk used
    with pytest.raises(RunError, match=r"history.csv: 16,777,217 bytes, more than a history file"):
        rundir.load_run(run)
    if sys.platform != "win32":
        import os

        (run / rundir.METRICS).unlink()
        os.mkfifo(run / rundir.METRICS)
        with pytest.raises(RunError, match="metrics.json: is a FIFO, not a regular file"):
            rundir.read_metrics(run / rundir.METRICS)


# ---- the dataset record ---------------------------------------------------------------------
def test_the_dataset_record_is_what_environment_json_holds(finished):
    env = json.loads((finished / rundir.ENVIRONMENT).read_text())
    run = rundir.load_run(finished)
    assert run.dataset.to_dict() == env["dataset"]
    ds = datasets.load("mnist-sample")
    assert run.dataset == rundir.DatasetRecord.of(ds)
    assert (run.dataset.train, run.dataset.test) == (len(ds.x_train), len(ds.x_test))


def test_the_record_loads_its_data_and_refuses_other_data(finished, tmp_path):
    run = rundir.load_run(finished)
    where = finished / rundir.ENVIRONMENT
    ds = run.dataset.load(where)
    assert ds.name == "mnist-sample" and ds.checksums == run.dataset.checksums
    other = dataclasses.replace(run.dataset, checksums={k: "0" * 64 for k in ds.checksums})
    with pytest.raises(RunError, match=r"environment.json: dataset 'mnist-sample' .*checksums"):
        other.load(where)
    with pytest.raises(RunError, match="checksums changed"):
        other.verify(ds, where)


@pytest.mark.parametrize(
    "dataset,said",
    [
        (None, r"\['dataset'\] is missing, expected an object"),
        ("mnist", r"\['dataset'\] is 'mnist', expected an object"),
        ({"name": "mnist", "checksums": 5}, r"\['dataset'\]\['checksums'\] is 5, expected an obj"),
        ({"name": "mnist", "data_dir": 42}, r"\['dataset'\]\['data_dir'\] is 42, expected a str"),
        ({"name": "mnist", "train": 1.5}, r"\['dataset'\]\['train'\] is 1.5, expected an integer"),
    ],
)
def test_a_malformed_record_is_one_line(dataset, said):
    env = {"engine": "fast"} if dataset is None else {"engine": "fast", "dataset": dataset}
    with pytest.raises(RunError, match=f"^environment.json: {said}"):
        rundir.DatasetRecord.from_environment(env, "environment.json")


# ---- a model that predicts NaN/inf: one check, every command ------------------------------
def _diverged(run_dir):
    run = rundir.load_run(run_dir)
    weights = {k: v * np.float32("nan") for k, v in run.weights.items()}
    rundir.write_model(
        run_dir / rundir.MODEL, weights, run.mean, run.std, run.class_names, run.recipe, "x"
    )


@pytest.mark.parametrize(
    "command,before",
    [
        ("evaluate", "evaluating"),
        ("predict", "predicting"),
        ("export", "exporting"),
        ("serve", "serving"),
    ],
)
def test_a_model_predicting_nan_is_refused_by_every_command(
    copy, image, monkeypatch, capsys, command, before
):
    if command == "export":
        pytest.importorskip("onnx")
    run = copy()
    _diverged(run)
    args = COMMANDS[command](run, image)
    if command == "serve":  # the check runs when the app is made; serve makes it after binding
        from mnistlab.web.app import create_app

        with pytest.raises(RunError) as info:
            create_app(run)
        err = f"error: {info.value}\n"
    else:
        code, _, err = _cli(monkeypatch, capsys, *args)
        assert code == 2
    assert err == (
        f"error: {run / rundir.MODEL}: the model predicts NaN/inf probabilities "
        f"(training diverged?); retrain it before {before}\n"
    )


def test_the_report_says_the_model_predicts_nan(copy):
    from mnistlab.pages import run_page

    run = copy()
    _diverged(run)
    text = run_page.write(run).read_text(encoding="utf-8")
    assert "the model predicts NaN/inf probabilities" in text
