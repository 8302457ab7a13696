"""Calibration: ECE and NLL on cases with known answers, temperature scaling that finds a known
temperature and lowers validation NLL, the stored calibration.json (read back, refused when
damaged or stale), Wilson intervals against known values, and evaluate's new numbers."""

import json
import math
import shutil

import numpy as np
import pytest
from runs import calibrated_run, serve_run
from scipy.stats import binomtest
from sklearn.decomposition import PCA
from sklearn.metrics import log_loss

from mnistlab.errors import RunError
from mnistlab.evaluation import calibration as cal
from mnistlab.evaluation import evaluate as ev
from mnistlab.evaluation.intervals import accuracy_interval, wilson
from mnistlab.rundir import CALIBRATION, load_run
from mnistlab.rundir import calibration as record


# ---- ECE, NLL ----------------------------------------------------------------------------
def test_ece_known_values_and_bin_edges():
    # two bins used: 0.9 (2 right of 2 -> gap 0.1) and 0.6 (1 of 2 -> gap 0.1)
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    assert cal.ece(conf, np.array([1, 1, 1, 0], bool)) == pytest.approx(0.1)
    # perfectly calibrated: 70 % sure and right 7 times in 10
    assert cal.ece(np.full(10, 0.7), np.arange(10) < 7) == pytest.approx(0.0, abs=1e-12)
    # always sure and always wrong: the worst case
    assert cal.ece(np.ones(5), np.zeros(5, bool)) == pytest.approx(1.0)
    # (lower, upper] bins: exactly 1/15 falls in the first bin, 1.0 in the last, 0 in the first
    r = cal.reliability(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 1.0]), np.ones(4, bool))
    assert r["count"].tolist() == [2, 1] + [0] * 12 + [1]
    assert np.isnan(r["accuracy"][5]) and r["edges"].tolist() == pytest.approx(
        np.linspace(0, 1, 16).tolist()
    )


def test_nll_is_log_loss_of_the_softmax_at_every_temperature():
    rng = np.random.default_rng(1)
    z, y = rng.normal(0, 3, (300, 10)), rng.integers(0, 10, 300)
    for t in (0.5, 1.0, 2.5):
        assert cal.nll(z, y, t) == pytest.approx(
            log_loss(y, record.softmax(z, t), labels=range(10)), rel=1e-9
        )


def _overconfident(t_true=2.0, n=6000, seed=0):
    """Logits whose labels are drawn from softmax(logits / t_true): T = t_true calibrates them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, (n, 10))
    p = record.softmax(z, t_true)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(y, 9)


def test_temperature_scaling_finds_the_true_temperature_and_lowers_nll():
    z, y = _overconfident(2.0)
    t = cal.fit_temperature(z, y)
    assert t == pytest.approx(2.0, rel=0.08)
    assert cal.nll(z, y, t) < cal.nll(z, y) - 0.05
    raw, scaled = record.softmax(z), record.softmax(z, t)
    assert (raw.argmax(1) == scaled.argmax(1)).all()  # the predicted class never changes
    assert cal.ece(scaled.max(1), scaled.argmax(1) == y) < cal.ece(raw.max(1), raw.argmax(1) == y)
    # the fit is a minimum: nudging T either way does not lower the NLL
    assert cal.nll(z, y, t) <= min(cal.nll(z, y, t * 1.05), cal.nll(z, y, t / 1.05))


def test_pixel_model_is_sklearn_probabilistic_pca():
    rng = np.random.default_rng(0)
    images = (rng.random((400, 6, 6)) * 255).astype(np.uint8)
    x = images.reshape(400, -1) / 255.0
    pca = PCA(5, svd_solver="covariance_eigh").fit(x)
    exact = record.PixelModel(
        pca.mean_, pca.components_, pca.explained_variance_, float(pca.noise_variance_)
    )
    np.testing.assert_allclose(exact.nll(images), -pca.score_samples(x), rtol=1e-9)
    stored = cal.fit_pixels(images, components=5)  # rounded to 6 digits: within 1e-4
    np.testing.assert_allclose(stored.nll(images), -pca.score_samples(x), rtol=1e-4)


# ---- Wilson -----------------------------------------------------------------------------
def test_wilson_known_values_and_scipy_agree():
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson(81, 263) == pytest.approx((0.25529, 0.36621), abs=1e-5)
    for k, n in ((1, 7), (37, 40), (9_731, 10_000), (1_900, 2_000)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # 99 % is wider; a fractional count (a mean over seeds) sits between its neighbours
    assert wilson(50, 100, 0.99)[0] < wilson(50, 100)[0]
    assert wilson(50, 100)[0] < wilson(50.5, 100)[0] < wilson(51, 100)[0]
    assert accuracy_interval(95, 100)["method"] == "Wilson score"
    with pytest.raises(ValueError, match="successes"):
        wilson(11, 10)


# ---- a run's calibration ---------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return calibrated_run(tmp_path_factory)


def test_calibration_of_a_trained_run_is_stored_and_lowers_validation_nll(run_dir):
    run = load_run(run_dir)
    stored = record.read_calibration(run)
    f = stored.fitted_on
    assert f["split"] == "validation" and f["n"] == 3000
    assert f["nll_after"] <= f["nll_before"]  # the fit lowers the NLL it minimises
    assert 0.05 < stored.temperature < 20
    # what the file holds is what a fresh fit gives: deterministic, and rounded as stored
    again = cal.fit(run)
    assert again.temperature == stored.temperature
    assert again.ood.threshold == stored.ood.threshold
    np.testing.assert_array_equal(again.ood.pixels.components, stored.ood.pixels.components)
    # calibrated probabilities are softmax(logits / T)
    x = np.zeros((1, 28, 28), np.uint8)
    x[0, 5:23, 13:16] = 255
    z = run.predict_logits(x)
    z64 = z.astype(np.float64)
    np.testing.assert_allclose(stored.probabilities(z), record.softmax(z64 / stored.temperature))
    assert (run_dir / CALIBRATION).stat().st_size < record.LIMITS[CALIBRATION]
    text = (run_dir / CALIBRATION).read_text()
    assert text.count("\n") < 40  # number lists on one line each: a readable head


def test_damaged_stale_and_impossible_calibrations_are_one_line(run_dir, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    path = run_copy / CALIBRATION
    obj = json.loads(path.read_text())
    for change, words in (
        (lambda o: o.update(temperature=-1), "temperature"),
        (lambda o: o["ood"]["pixels"].update(variances=[1.0]), "pixels"),
        (lambda o: o["ood"].update(energy_quantiles=[3, 2, 1]), "quantile"),
        (lambda o: o.update(temperature="hot"), "['temperature'] is 'hot'"),
        (lambda o: o.update(format="other/1"), "not a mnistlab-calibration/1"),
    ):
        bad = json.loads(json.dumps(obj))
        change(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(RunError) as info:
            record.read_calibration(load_run(run_copy))
        assert str(info.value).startswith(str(path)) and words in str(info.value)
        assert "\n" not in str(info.value)
    path.write_text(json.dumps(obj))
    run = load_run(run_copy)
    run.weights["dense_0.bias"] = run.weights["dense_0.bias"] + 1  # other weights now
    with pytest.raises(RunError, match="fitted for other weights"):
        record.read_calibration(run)
    path.unlink()
    with pytest.raises(RunError, match="not calibrated yet; `mnistlab evaluate"):
        record.read_calibration(load_run(run_copy))
    assert record.find_calibration(load_run(run_copy)) is None


def test_a_run_without_validation_part_cannot_be_calibrated(tmp_path):
    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    run = fit(
        Recipe(epochs=1, hidden=[8], validation_split=0.0),
        datasets.load("mnist-sample"),
        out=tmp_path / "r",
        quiet=True,
    )
    with pytest.raises(RunError, match="cannot be calibrated: it held out no validation data"):
        cal.calibrate(run.path)
    assert not (tmp_path / "r" / CALIBRATION).exists()
    result = ev.evaluate(run.path)  # evaluate still measures the raw calibration, and says why
    c = result["calibration"]
    assert c["temperature"] is None and "no validation data" in c["why_not"]
    assert c["ece_before"] > 0 and c["ece_after"] is None


def test_evaluate_reports_the_interval_and_calibration_before_and_after(
    tmp_path_factory, tmp_path, capsys
):
    run_copy = tmp_path / "run"
    shutil.copytree(serve_run(tmp_path_factory), run_copy, ignore=shutil.ignore_patterns("*.html"))
    result = ev.evaluate(run_copy)
    ci, n = result["accuracy_ci"], result["n"]
    assert ci["correct"] == round(result["accuracy"] * n)
    assert (ci["low"], ci["high"]) == pytest.approx(wilson(ci["correct"], n))
    c = result["calibration"]
    assert c["split"] == "test" and c["n"] == n and c["why_not"] is None
    assert c["temperature"] == record.read_calibration(load_run(run_copy)).temperature
    assert c["nll_before"] == pytest.approx(result["loss"], rel=1e-5)  # the same cross-entropy
    saved = json.loads((run_copy / "metrics.json").read_text())["evaluation"]["test"]
    assert saved["calibration"] == pytest.approx(c) and saved["accuracy_ci"] == pytest.approx(ci)
    assert (run_copy / "reliability_test.png").stat().st_size > 0
    ev.print_evaluation(result)
    out = capsys.readouterr().out
    assert (
        "95 % CI" in out and "Calibration on test" in out and f"T = {c['temperature']:.3g}" in out
    )


def test_cli_evaluate_ood_stores_and_prints_the_check(tmp_path_factory, tmp_path, capsys):
    from mnistlab.cli import main

    run_copy = tmp_path / "run"
    shutil.copytree(calibrated_run(tmp_path_factory), run_copy)
    for args, code in ((["--split", "val", "--ood"], 2), (["--ood"], 0)):
        import sys

        sys.argv = ["mnistlab", "evaluate", str(run_copy), *args]
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == code
    captured = capsys.readouterr()
    assert "--ood: false alarms are measured on test digits" in captured.err
    assert "Not a digit I know" in captured.out and "scribbles" in captured.out
    ood = json.loads((run_copy / "metrics.json").read_text())["evaluation"]["test"]["ood"]
    assert set(ood["catch"]) == {"letters", "shapes", "scribbles", "noise"}
    assert math.isclose(ood["false_alarm"]["target"], 0.05)


@pytest.mark.parametrize(
    "recipe",
    [
        {"hidden": [16], "batch_norm": True},  # the fast engine's NumPy forward
        {"kind": "cnn", "conv_channels": [4], "hidden": [8]},  # the reference engine's torch
    ],
)
def test_engine_logits_are_what_the_probabilities_are_the_softmax_of(recipe):
    from mnistlab.engines import predictor
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe

    r = Recipe(**recipe)
    w = init_weights(r)
    x = np.random.default_rng(0).normal(0, 1, (6, 784)).astype(np.float32)
    z = predictor(r, w, logits=True)(x)
    assert z.shape == (6, 10) and z.dtype == np.float32
    np.testing.assert_allclose(record.softmax(z), predictor(r, w)(x), atol=1e-6)


def test_cli_evaluate_ood_without_a_validation_part_is_refused_before_any_work(
    tmp_path_factory, tmp_path, capsys
):
    import sys

    from mnistlab.cli import main
    from mnistlab.recipe import Recipe

    run_copy = tmp_path / "run"
    shutil.copytree(calibrated_run(tmp_path_factory), run_copy)
    recipe = Recipe.from_toml(run_copy / "recipe.toml")
    recipe.replace(validation_split=0.0).to_toml(run_copy / "recipe.toml")  # as best-mlp's
    before = (run_copy / "metrics.json").read_bytes()
    sys.argv = ["mnistlab", "evaluate", str(run_copy), "--ood", "--robustness"]
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "validation_split = 0" in err, err
    assert (run_copy / "metrics.json").read_bytes() == before  # nothing evaluated, half-done
