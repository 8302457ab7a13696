"""predict: photos/scans of digits prepared as MNIST was made, then classified by a real run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import typer
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mnistlab import datasets
from mnistlab.cli import predict as cli_predict
from mnistlab.errors import DataError
from mnistlab.use import predict as pr

N_REAL = 20


@pytest.fixture(scope="module")
def sample():
    return datasets.load("mnist-sample")


@pytest.fixture(scope="module")
def run(sample, tmp_path_factory):
    """A briefly trained notebook recipe (2 epochs on the bundled sample, ~92-95 % test)."""
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    return fit(Recipe(epochs=2), sample, out=tmp_path_factory.mktemp("run") / "r", quiet=True)


def _as_photo(digit: np.ndarray, path, size=200, paper=255, ink=0):
    """A real 28x28 MNIST digit as a user would hand it over: big, dark ink on light paper."""
    big = np.asarray(
        Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float64
    )
    photo = paper + (ink - paper) * big / 255.0
    Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8)).save(path)
    return path


def _corr(a, b):
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def _best_corr(a, b):
    # MNIST placed digits by an integer shift of the centre of mass: a round trip through a
    # 200 px image may land one pixel off, which is the same digit to a human and to the model.
    return max(_corr(np.roll(a, (dy, dx), (0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def _center_of_mass(x):
    x = x.astype(float)
    i = np.arange(x.shape[0])
    return (x.sum(1) @ i) / x.sum(), (x.sum(0) @ i) / x.sum()


def _pen_digit(kind: str, pen: int, size=600):
    """A digit drawn with a pen ``pen`` px wide on a ``size`` px photo of light paper."""
    img = Image.new("L", (size, size), 235)
    d = ImageDraw.Draw(img)
    if kind == "7":
        d.line([(180, 120), (420, 120)], fill=25, width=pen)
        d.line([(420, 120), (260, 500)], fill=25, width=pen)
    else:  # "0"
        d.ellipse([200, 100, 400, 500], outline=25, width=pen)
    return np.asarray(img)


def test_brief_model_recognizes_round_tripped_real_digits(run, sample, tmp_path):
    paths = [
        _as_photo(sample.x_test[i], tmp_path / f"r{i}.{'jpg' if i % 2 else 'png'}")
        for i in range(N_REAL)
    ]
    results = pr.predict(run, paths, top=3)
    assert [r.source for r in results] == [str(p) for p in paths]
    hits = [r.predicted == int(sample.y_test[i]) for i, r in enumerate(results)]
    assert np.mean(hits) >= 0.8, hits
    for r in results:
        assert len(r.top) == 3 and r.top[0][2] >= r.top[1][2] >= r.top[2][2]
        assert r.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert r.label == run.class_names[r.predicted] and r.probability == r.top[0][2]
    # Pen-thin handwriting, the case thickening is for, is read correctly too.
    pens = pr.predict(run, [_pen_digit("7", 3), _pen_digit("0", 4)])
    assert [p.label for p in pens] == ["7", "0"] and min(p.probability for p in pens) > 0.8
    # Arrays take the same path as files; the run can be given as a folder.
    again = pr.predict(run.path, [np.asarray(Image.open(paths[0]))], top=1)
    assert again[0].predicted == results[0].predicted
    assert np.array_equal(again[0].image, results[0].image)
    # A stack of MNIST arrays is N images; already-prepared digits pass through nearly as they are.
    stack = pr.predict(run, sample.x_test[:5], top=2)
    assert len(stack) == 5 and all(
        _best_corr(r.image, x) > 0.9 for r, x in zip(stack, sample.x_test)
    )
    json.dumps([r.to_dict() for r in results])
    with pytest.raises(ValueError, match="top"):
        pr.predict(run, paths[:1], top=11)


def _app():
    app = typer.Typer()
    cli_predict.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a second command keeps "predict" a subcommand
    return app


def test_cli_table_json_and_figure(run, sample, tmp_path):
    seven = int(np.flatnonzero(sample.y_test == 7)[0])
    img = _as_photo(sample.x_test[seven], tmp_path / "my_seven.jpg")
    res = CliRunner(env={"COLUMNS": "250"}).invoke(
        _app(), ["predict", str(run.path), str(img), "--show", str(tmp_path / "f.png")]
    )
    assert res.exit_code == 0, res.output
    assert "my_seven.jpg" in res.output and "Predictions" in res.output
    with Image.open(tmp_path / "f.png") as fig:
        assert fig.size[0] > 300 and fig.size[1] > 100
    res = CliRunner().invoke(
        _app(), ["predict", str(run.path), str(img), str(img), "--json", "--top", "20"]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert len(got) == 2 and len(got[0]["top"]) == 10  # --top beyond the classes lists them all
    assert got[0]["label"] == "7" and got[0]["file"] == str(img)


def test_cli_bad_image_exits_2_with_one_line_error(run, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "predict", str(run.path), str(tmp_path / "broken.jpg")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and "broken.jpg" in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr


def test_one_bad_file_does_not_sink_the_batch(run, sample, tmp_path):
    good = [_as_photo(sample.x_test[i], tmp_path / f"good{i}.png") for i in range(2)]
    (tmp_path / "notes.png").write_text("this is not an image")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    Image.new("1", (13000, 13000), 1).save(tmp_path / "huge.png")  # ~25 KB, 169 megapixels
    files = [
        good[0],
        tmp_path / "notes.png",
        tmp_path / "blank.png",
        tmp_path / "missing.png",
        tmp_path / "huge.png",
        good[1],
    ]
    why = [
        "",
        "not an image Pillow can read",
        "the image is blank",
        "no such file",
        "13000x13000 pixels is more than mnistlab decodes",
        "",
    ]
    # API: each bad file is a Failed in its place; good ones are predicted as alone.
    results = pr.predict(run, files, on_error="collect")
    assert [r.ok for r in results] == [bool(w == "") for w in why]
    alone = pr.predict(run, good)
    for r, a in zip([results[0], results[5]], alone):
        assert np.array_equal(r.probabilities, a.probabilities)
    for r, w in zip(results, why):
        if w:
            assert r.error.startswith(f"{r.source}: {w}") and "\n" not in r.error, r.error
    with pytest.raises(DataError, match="notes.png"):
        pr.predict(run, files)  # the default stops at the first bad file
    # CLI, table and JSON: every file has its row, errors one line each on stderr, exit 2.
    cmd = [sys.executable, "-m", "mnistlab", "predict", str(run.path), *map(str, files)]
    p = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert p.returncode == 2, p.stderr
    for f in files:
        assert f.name in p.stdout
    assert "not an image Pillow can read" in p.stdout and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    assert "DecompressionBomb" not in p.stderr
    p = subprocess.run(
        cmd + ["--json", "--show", str(tmp_path / "fig.png")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert (tmp_path / "fig.png").is_file()  # the good files' figure is still drawn
    got = json.loads(p.stdout)
    assert [e["file"] for e in got] == [str(f) for f in files]
    assert [("error" not in e) for e in got] == [bool(w == "") for w in why]
    assert got[0]["label"] == results[0].label and why[2] in got[2]["error"]


def test_prepared_images_predict_directly(run, sample):
    direct = pr.predict_prepared(run, sample.x_test[:3], ["a", "b", "c"], top=2)
    assert [r.source for r in direct] == ["a", "b", "c"] and len(direct[0].top) == 2
    np.testing.assert_allclose(
        direct[1].probabilities, run.predict_proba(sample.x_test[1:2])[0], atol=1e-6
    )  # BLAS may round a batch of 1 differently
    with pytest.raises(DataError, match=r"\(N, 28, 28\)"):
        pr.predict_prepared(run, np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(ValueError, match="on_error"):
        pr.predict(run, sample.x_test[:1], on_error="skip")


@pytest.mark.parametrize(
    "args, why",
    [
        (["--top", "0"], "--top"),
        (["--top", "x"], "--top"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(run, tmp_path, args, why):
    Image.new("L", (40, 40), 0).save(tmp_path / "d.png")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "predict",
            str(run.path),
            str(tmp_path / "d.png"),
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and why in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr


def test_cli_missing_run_is_one_line_error(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "predict",
            str(tmp_path / "no-run"),
            str(tmp_path / "d.png"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "no such run folder" in p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr
