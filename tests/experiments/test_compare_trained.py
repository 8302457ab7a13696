"""The same recipe flags on compare and search as on train, and compare of models already
trained: run folders, .npy predictions and ONNX models from any framework, paired on the same
test images, or refused in one line."""

import dataclasses
import json
import sys

import numpy as np
import pytest

import mnistlab
from mnistlab import datasets, rundir
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import sources
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import leaderboard as lb
from mnistlab.experiments import paired
from mnistlab.experiments import search as srch
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit


def _cli(monkeypatch, capsys, *args):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["mnistlab", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ---- recipe flags on compare and search ---------------------------------------------------
def test_recipe_changes_go_under_each_variants_own():
    plain = cmp.load_preset("beat-the-baseline")
    changed = cmp.load_preset("beat-the-baseline", {"epochs": 2, "optimizer": "rmsprop"})
    assert list(changed.recipes) == list(plain.recipes)
    for name, recipe in changed.recipes.items():
        assert recipe.epochs == 2
        own = "adam" if plain.recipes[name].optimizer == "adam" else "rmsprop"
        assert recipe.optimizer == own, name  # the adam variant keeps its own optimizer


def test_cli_compare_preset_with_recipe_flags(tmp_path, monkeypatch, capsys):
    code, out, err = _cli(
        monkeypatch, capsys, "compare", "--preset", "beat-the-baseline", "--epochs", 1,
        "--seeds", 1, "--hidden", "8", "--batch-size", 128, "--dataset", "mnist-sample",
        "--train-images", 300, "--test-images", 100, "--out", tmp_path / "c", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    assert board["seeds"] == [0] and len(board["variants"]) == 6
    for v in board["variants"]:
        recipe = Recipe.from_toml(tmp_path / "c" / v["runs"][0]["path"] / "recipe.toml")
        assert (recipe.epochs, recipe.hidden, recipe.batch_size) == (1, [8], 128)
        assert recipe.dataset is None  # --dataset names the data, it changes no recipe


def test_cli_search_with_recipe_flags(tmp_path, monkeypatch, capsys):
    space = tmp_path / "s.toml"
    space.write_text("[base]\nhidden = [8]\n[space]\nlr = { low = 1e-3, high = 0.1, log = true }\n")
    code, out, err = _cli(
        monkeypatch, capsys, "search", space, "--trials", 1, "--epochs", 1, "--batch-size", 128,
        "--dataset", "mnist-sample", "--train-images", 300, "--out", tmp_path / "s", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    trial = Recipe.from_toml(tmp_path / "s" / "trials" / "trial-0000" / "recipe.toml")
    assert (trial.epochs, trial.batch_size, trial.hidden) == (1, 128, [8])
    assert srch.load_space(space, {"epochs": 4}).base.epochs == 4


def test_name_is_no_flag_of_compare_or_search(monkeypatch, capsys):
    for command in ("compare", "search"):
        code, _, err = _cli(monkeypatch, capsys, command, "x.toml", "--name", "y")
        assert code == 2 and "No such option: --name" in err


# ---- compare of trained models ------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:1000], y_train=ds.y_train[:1000])
    root = tmp_path_factory.mktemp("trained")
    a = fit(Recipe(epochs=1, hidden=[16], threads=1), small, out=root / "a", quiet=True)
    b = fit(Recipe(epochs=2, hidden=[32], threads=1), small, out=root / "b", quiet=True)
    return root, a, b, ds


def test_two_runs_pair_on_their_stored_predictions(trained):
    root, a, b, ds = trained
    result = paired.compare_trained([a.path, b.path])
    hit_a = a.predict_proba(ds.x_test).argmax(1) == ds.y_test
    hit_b = b.predict_proba(ds.x_test).argmax(1) == ds.y_test
    only_a, only_b = int(np.sum(hit_a & ~hit_b)), int(np.sum(hit_b & ~hit_a))
    base, other = result["models"]
    assert (base["name"], base["verdict"]) == ("a", "baseline")
    assert base["test_accuracy"] == pytest.approx(a.metrics["test"]["accuracy"], abs=1e-3)
    assert other["discordant"] == {"baseline_only": only_a, "variant_only": only_b}
    assert other["p_value"] == lb.mcnemar(only_a, only_b) == other["p_holm"]
    assert result["dataset"] == {"name": "mnist-sample", "test": 2000}
    # the Python verb takes the same list
    assert mnistlab.compare([a.path, b.path])["models"] == result["models"]


def test_an_older_run_without_stored_predictions_gets_them_recomputed(trained, tmp_path):
    import shutil

    root, a, b, _ = trained
    old = tmp_path / "old"
    shutil.copytree(b.path, old)
    (old / rundir.PREDICTIONS).unlink()
    notes = []
    again = paired.compare_trained([a.path, old], log=notes.append)
    assert (
        again["models"][1]["discordant"]
        == paired.compare_trained([a.path, b.path])["models"][1]["discordant"]
    )
    assert any("recomputed from its model" in n for n in notes)


def test_npy_labels_and_probabilities_and_an_onnx_export_next_to_runs(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from mnistlab.use.export import export

    root, a, b, ds = trained
    proba = b.predict_proba(ds.x_test)
    np.save(tmp_path / "labels.npy", proba.argmax(1))
    np.save(tmp_path / "proba.npy", proba)
    onnx = export(b.path, "onnx", tmp_path / "b.onnx")
    result = paired.compare_trained(
        [a.path, b.path, tmp_path / "labels.npy", tmp_path / "proba.npy", onnx],
        out=tmp_path / "out",
    )
    rows = {r["name"]: r for r in result["models"]}
    for name in ("labels.npy", "proba.npy", "b.onnx"):
        assert rows[name]["discordant"] == rows["b"]["discordant"], name
    assert [r["kind"] for r in result["models"]] == ["run", "run", "npy", "npy", "onnx"]
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert saved["models"][2]["name"] == "labels.npy"
    assert (tmp_path / "out" / "comparison.csv").read_text().startswith("name,kind,test_accuracy")


def test_onnx_models_in_other_layouts_scalings_and_logits(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    root, a, _, _ = trained
    # a linear "model" on unit-scaled (N, 1, 28, 28) input answering logits: argmax of x @ W
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(kernel, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "linear.onnx")
    test = sources.shared_test_images([a.path])
    got = sources.read(tmp_path / "linear.onnx", "onnx", test, pixels="unit")
    expected = ((test.x.reshape(-1, 784).astype(np.float32) / 255) @ kernel).argmax(1)
    np.testing.assert_array_equal(got.labels, expected)
    assert "read as logits" in got.note and np.allclose(got.proba.sum(1), 1)


@pytest.mark.parametrize(
    "array,words",
    [
        (np.zeros(1999, np.int64), "1,999 predictions, but the test set of mnist-sample has 2,000"),
        (np.zeros((2000, 3)), "shape (2000, 3), expected labels (2000,) or probabilities"),
        (np.full(2000, 0.5), "labels of dtype float64, expected integers 0..9"),
        (np.full(2000, 10), "labels from 10 to 10, expected integers 0..9"),
        (np.full((2000, 10), 0.5), "expected probabilities in [0, 1] summing to 1 (logits?"),
        (np.full((2000, 10), np.nan), "NaN or infinite"),
        (np.array(["7"] * 2000), "labels of dtype <U1"),
    ],
)
def test_npy_inputs_are_checked_in_one_line(trained, tmp_path, array, words):
    root, a, _, _ = trained
    np.save(tmp_path / "p.npy", array)
    with pytest.raises(MnistlabError) as err:
        paired.compare_trained([a.path, tmp_path / "p.npy"])
    assert words in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / "p.npy") in str(err.value)


def test_unreadable_npy_and_other_files_are_one_line(trained, tmp_path):
    root, a, _, _ = trained
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "notes.txt").write_text("x")
    for path, words in (
        (tmp_path / "obj.npy", "not a readable .npy array"),
        (tmp_path / "junk.npy", "not a readable .npy array"),
        (tmp_path / "notes.txt", "expected a run folder, a .npy of predictions or an .onnx"),
        (tmp_path / "missing.onnx", "no such file"),
    ):
        with pytest.raises(MnistlabError, match=words):
            paired.compare_trained([a.path, path])


def test_runs_of_other_test_sets_are_refused(trained, tmp_path):
    root, a, _, ds = trained
    fewer = dataclasses.replace(ds, x_test=ds.x_test[:500], y_test=ds.y_test[:500])
    c = fit(Recipe(epochs=1, hidden=[8]), fewer, out=tmp_path / "c", quiet=True)
    with pytest.raises(MnistlabError, match=r"scored on 'mnist-sample' \(500 test images\), but"):
        paired.compare_trained([a.path, c.path])
    with pytest.raises(MnistlabError, match="--dataset mnist: the runs were scored on"):
        paired.compare_trained([a.path, a.path], dataset="mnist")


def test_onnxruntime_missing_is_an_install_hint(trained, tmp_path, monkeypatch):
    root, a, _, _ = trained
    (tmp_path / "m.onnx").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(MnistlabError, match=r"needs onnxruntime: pip install 'mnistlab\[export\]'"):
        paired.compare_trained([a.path, tmp_path / "m.onnx"])


def test_cli_compare_of_trained_models(trained, tmp_path, monkeypatch, capsys):
    root, a, b, ds = trained
    np.save(tmp_path / "keras.npy", b.predict_proba(ds.x_test))
    code, out, err = _cli(monkeypatch, capsys, "compare", a.path, b.path, tmp_path / "keras.npy")
    assert code == 0, err
    for words in ("3 models on mnist-sample (2,000 test images), baseline a", "keras.npy", "npy"):
        assert words in out, words
    for args, words in (
        ([a.path], "1 trained model given"),
        ([a.path, b.path, "--epochs", 3], "takes no recipe or training input; drop --epochs"),
        ([a.path, b.path, "--seeds", 3], "drop --seeds"),
    ):
        code, out, err = _cli(monkeypatch, capsys, "compare", *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert words in err


def test_evaluate_takes_predictions_from_any_framework(trained, tmp_path, monkeypatch, capsys):
    root, a, b, ds = trained
    proba = b.predict_proba(ds.x_test)
    np.save(tmp_path / "p.npy", proba)
    np.save(tmp_path / "l.npy", proba.argmax(1))
    by_run = mnistlab.evaluate(b.path, out=tmp_path / "run-figs")
    by_proba = mnistlab.evaluate(tmp_path / "p.npy", dataset="mnist-sample", out=tmp_path / "p")
    by_labels = mnistlab.evaluate(tmp_path / "l.npy", dataset="mnist-sample", out=tmp_path / "l")
    assert by_proba["accuracy"] == by_labels["accuracy"] == by_run["accuracy"]
    assert by_proba["per_class"] == by_run["per_class"]
    assert by_proba["loss"] == pytest.approx(by_run["loss"], rel=1e-6)
    assert by_labels["loss"] is None and by_labels["r2"]["brier"] is None
    saved = json.loads((tmp_path / "l" / "evaluation.json").read_text())
    assert saved["source"] == str(tmp_path / "l.npy")
    assert (tmp_path / "l" / "confusion_matrix_test.png").is_file()
    code, out, err = _cli(monkeypatch, capsys, "evaluate", tmp_path / "l.npy", "--dataset",
                          "mnist-sample", "--out", tmp_path / "cli")  # fmt: skip
    assert code == 0 and "labels only" in out and "wrote evaluation.json" in out, err
    code, out, err = _cli(monkeypatch, capsys, "evaluate", tmp_path / "l.npy", "--split", "val")
    assert code == 2 and "needs a run" in err
