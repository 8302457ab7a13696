"""imageprep: photos, scans and canvas drawings made into 28x28 digits the way MNIST was made."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab import datasets
from mnistlab.errors import DataError
from mnistlab.use import imageprep as pr

N_REAL = 20


@pytest.fixture(scope="module")
def sample():
    return datasets.load("mnist-sample")


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


def test_round_trip_of_real_test_digits_recovers_the_original(sample, tmp_path):
    plain, shifted = [], []
    for i in range(N_REAL):
        path = _as_photo(sample.x_test[i], tmp_path / f"d{i}.{'jpg' if i % 2 else 'png'}")
        x = pr.load_image(path)
        assert x.shape == (28, 28) and x.dtype == np.uint8
        assert x.max() == 255 and x[0].max() == 0 and x[:, 0].max() == 0  # ink bright, border black
        cy, cx = _center_of_mass(x)
        assert abs(cy - 14) < 0.75 and abs(cx - 14) < 0.75, (i, cy, cx)
        plain.append(_corr(x, sample.x_test[i]))
        shifted.append(_best_corr(x, sample.x_test[i]))
    assert np.median(plain) > 0.9, plain
    assert min(shifted) > 0.85, shifted


def test_pillow_drawn_stroke_is_cropped_scaled_to_20px_and_centred(tmp_path):
    # A thick, off-centre '1' on grey paper: tall and thin, so 20 px high and a few px wide.
    img = Image.new("L", (300, 400), 190)
    ImageDraw.Draw(img).line([(60, 40), (70, 300)], fill=30, width=22)
    img.save(tmp_path / "one.png")
    x = pr.load_image(tmp_path / "one.png")
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    assert rows[-1] - rows[0] + 1 == 20
    assert 2 <= cols[-1] - cols[0] + 1 <= 6  # aspect ratio kept, not stretched to a square
    cy, cx = _center_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    # A '7' (two strokes): wider than tall or not, the longer side is 20 px.
    seven = Image.new("RGB", (500, 500), (245, 240, 230))
    d = ImageDraw.Draw(seven)
    d.line([(300, 100), (450, 100)], fill=(20, 20, 60), width=25)
    d.line([(450, 100), (340, 400)], fill=(20, 20, 60), width=25)
    seven.save(tmp_path / "seven.jpg", quality=80)
    y = pr.load_image(tmp_path / "seven.jpg")
    rows, cols = np.flatnonzero(y.any(1)), np.flatnonzero(y.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20
    assert y[6:9, :].sum() > y[20:23, :].sum()  # the bar of the 7 stays on top: not flipped
    # Placed by its centre of mass, not its box: the heavy bar pulls the box's centre off 14.
    cy, cx = _center_of_mass(y)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert abs((rows[0] + rows[-1]) / 2 - 14) >= 1 or abs((cols[0] + cols[-1]) / 2 - 14) >= 1


def test_inversion_is_detected_both_ways(sample, tmp_path):
    digit = sample.x_test[3]
    dark_on_light = _as_photo(digit, tmp_path / "paper.png", paper=230, ink=25)
    light_on_dark = _as_photo(digit, tmp_path / "screen.png", paper=10, ink=240)
    a, b = pr.load_image(dark_on_light), pr.load_image(light_on_dark)
    assert pr.ink_is_dark(pr.read_gray(dark_on_light)) is True
    assert pr.ink_is_dark(pr.read_gray(light_on_dark)) is False
    assert _corr(a, b) > 0.98 and _best_corr(a, digit) > 0.9
    # An already MNIST-style array goes through unchanged in polarity (no double inversion).
    assert _best_corr(pr.prepare(digit), digit) > 0.95


def test_transparent_png_is_composited_on_white(sample, tmp_path):
    digit = sample.x_test[5]
    big = np.asarray(Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC))
    rgba = np.zeros((140, 140, 4), np.uint8)
    rgba[..., 3] = big  # black ink whose opacity is the stroke, on a fully transparent canvas
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    x = pr.load_image(tmp_path / "ink.png")
    assert _best_corr(x, digit) > 0.9


def test_paper_texture_below_the_noise_floor_changes_nothing_visible(sample, tmp_path):
    clean = pr.load_image(_as_photo(sample.x_test[7], tmp_path / "clean.png", paper=220, ink=30))
    photo = np.asarray(Image.open(tmp_path / "clean.png"), np.float64)
    noisy = photo + np.random.default_rng(0).normal(0, 4, photo.shape)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(tmp_path / "noisy.png")
    # (up to the one-pixel quantization of MNIST's centring, which noise can tip either way)
    assert _best_corr(pr.load_image(tmp_path / "noisy.png"), clean) > 0.97


def test_uneven_lighting_is_flattened_before_cropping(sample, tmp_path):
    # A phone photo: the lamp is on the left, the right of the page is in shadow at 55 %.
    digit = sample.x_test[11]
    clean = pr.load_image(_as_photo(digit, tmp_path / "clean.png", paper=235, ink=25))
    photo = np.asarray(Image.open(tmp_path / "clean.png"), np.float64)
    light = (
        np.linspace(1.0, 0.55, photo.shape[1])[None, :]
        * np.linspace(1.0, 0.9, photo.shape[0])[:, None]
    )
    Image.fromarray(np.rint(photo * light).astype(np.uint8)).save(
        tmp_path / "shaded.jpg", quality=90
    )
    shaded = pr.load_image(tmp_path / "shaded.jpg")
    assert _best_corr(shaded, clean) > 0.95


def test_16_bit_scan_is_rescaled_not_clipped(sample, tmp_path):
    big = np.asarray(Image.fromarray(sample.x_test[2]).resize((120, 120), Image.Resampling.BICUBIC))
    Image.fromarray(big.astype(np.uint16) * 257).save(tmp_path / "scan16.png")  # 0..65535
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I")
    assert _best_corr(pr.load_image(tmp_path / "scan16.png"), sample.x_test[2]) > 0.9


def test_fashion_style_fills_28_and_centres_the_box():
    a = np.full((90, 60), 255, np.uint8)
    a[10:80, 5:40] = 0  # a dark 70x35 block
    x = pr.prepare(a, style="fashion")
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    assert (rows[0], rows[-1]) == (0, 27) and cols[-1] - cols[0] + 1 == 14
    assert cols[0] == (28 - 14) // 2
    assert pr.style_for("fashion-mnist") == "fashion" and pr.style_for("mnist-sample") == "mnist"


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


def test_pen_thin_strokes_are_thickened_to_mnist_width_thick_ones_kept(sample):
    # A 3 px ballpoint line on a 380 px digit would shrink to a faint 0.2 px hairline at MNIST's
    # scale without thickening; with it, it is as wide as a typical MNIST stroke.
    def width_at_box(x):
        big = np.asarray(
            Image.fromarray(x).resize((280, 280), Image.Resampling.NEAREST), np.float32
        )
        return pr.stroke_width(big) / 10  # in 28x28 pixels

    mnist = np.percentile([width_at_box(x) for x in sample.x_test[:200]], [10, 90])
    thin = pr.prepare(_pen_digit("7", 3))
    assert mnist[0] <= width_at_box(thin) <= mnist[1], (width_at_box(thin), mnist)
    assert np.percentile(thin[thin > 0], 75) > 200  # strokes are solid, not grey hairlines
    thick = pr.prepare(_pen_digit("7", 100))
    assert width_at_box(thick) > mnist[1]  # a marker stays a marker: nothing is thinned
    wide = np.zeros((200, 200), np.float32)
    wide[50:150, 80:120] = 255  # 40 px wide at the working scale: left exactly as it is
    assert pr.thicken(wide) is wide


@pytest.mark.parametrize("color", [255, 128, 0])
def test_blank_image_is_a_one_line_error_naming_the_file(tmp_path, color):
    path = tmp_path / f"blank{color}.png"
    Image.new("L", (64, 64), color).save(path)
    with pytest.raises(DataError, match=r"blank\d+\.png: the image is blank") as exc:
        pr.load_image(path)
    assert "\n" not in str(exc.value)


def test_noisy_photo_of_blank_paper_is_blank_not_a_speck(tmp_path):
    noise = np.random.default_rng(1).normal(0, 4, (300, 400))
    shade = np.linspace(1.0, 0.8, 400)[None, :]  # and unevenly lit
    Image.fromarray(np.clip((215 + noise) * shade, 0, 255).astype(np.uint8)).save(
        tmp_path / "empty.jpg"
    )
    with pytest.raises(DataError, match=r"empty\.jpg: the image is blank"):
        pr.load_image(tmp_path / "empty.jpg")


def test_unreadable_files_are_one_line_errors_naming_the_file(sample, tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    png = _as_photo(sample.x_test[0], tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])  # truncated download
    cases = {
        "notes.png": "not an image Pillow can read",
        "cut.png": "damaged image file",
        "missing.png": "no such file",
    }
    for name, why in cases.items():
        with pytest.raises(DataError, match=rf"{name}: {why}") as exc:
            pr.load_image(tmp_path / name)
        assert "\n" not in str(exc.value)


# ---- the conditions people hand digits over in (rendered by bench/predict_robustness.py) --
BENCH = Path(__file__).resolve().parents[2] / "bench" / "predict_robustness.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_predict_robustness", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


robustness = _bench()
DIGITS = 8  # test digits per condition


@pytest.fixture(scope="module")
def model(sample, tmp_path_factory):
    """The notebook recipe, 2 epochs on the bundled sample (~93 % test accuracy)."""
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    return fit(Recipe(epochs=2), sample, out=tmp_path_factory.mktemp("run") / "r", quiet=True)


@pytest.mark.parametrize("condition", list(robustness.CONDITIONS))
def test_condition_gives_back_the_digit_the_model_knows(condition, sample, model):
    # One test digit of each class 0-7 (never training ones), under the condition.
    idx = [int(np.flatnonzero(sample.y_test == k)[0]) for k in range(DIGITS)]
    digits = sample.x_test[idx]
    prepared = np.stack(
        [
            pr.load_image(robustness.render(condition, d, 0, i), name=condition)
            for i, d in enumerate(digits)
        ]
    )
    assert prepared.shape == (DIGITS, 28, 28) and prepared.dtype == np.uint8
    # The same digit as a human sees it (up to MNIST's one-pixel centring), and mostly the
    # same answer from the model as on the original 28x28.
    corr = [_best_corr(p, d) for p, d in zip(prepared, digits)]
    assert np.median(corr) > 0.85 and min(corr) > 0.6, corr
    original = model.predict_proba(digits).argmax(1)
    got = model.predict_proba(prepared).argmax(1)
    assert (got == original).sum() >= DIGITS - 1, (got, original)


def test_faint_pencil_on_noisy_paper_is_read_not_blank(sample):
    # Contrast 35 grey levels on paper whose grain is 5: a person reads it at once.
    cov = robustness.coverage(sample.x_test[1], 280)
    rng = np.random.default_rng(3)
    photo = 215 - 35 * cov + rng.normal(0, 5, cov.shape)
    x = pr.prepare(np.clip(photo, 0, 255).astype(np.uint8))
    assert _best_corr(x, sample.x_test[1]) > 0.85


def test_tight_crop_of_a_big_grey_digit_is_not_blank():
    # The digit fills the frame and is grey, not black: most pixels are ink.
    a = np.full((100, 60), 200, np.uint8)
    a[:, 10:50] = 120
    a[20:80, 25:35] = 200  # a fat "0"
    x = pr.prepare(a)
    assert x.max() == 255 and x[14, 14] < x[14, 9]


def test_bytes_and_pil_images_take_the_same_path(sample, tmp_path):
    path = _as_photo(sample.x_test[4], tmp_path / "d.png")
    from_file = pr.load_image(path)
    assert np.array_equal(pr.load_image(path.read_bytes()), from_file)
    with Image.open(path) as img:
        assert np.array_equal(pr.prepare(img), from_file)
    with pytest.raises(DataError, match=r"^<upload>: not an image"):
        pr.load_image(b"not an image")


@pytest.mark.parametrize("condition", ["lined-paper", "squared-paper", "jpeg", "small-on-page"])
def test_empty_page_of_each_kind_is_blank(condition):
    # The same renderings with no digit: rules, JPEG blocks and grain are paper, not a digit.
    empty = robustness.render(condition, np.zeros((28, 28), np.uint8), 0, 0)
    with pytest.raises(DataError, match=r"^<upload>: the image is blank"):
        pr.load_image(empty)


def test_robustness_bench_prints_a_row_per_condition(model, capsys):
    assert robustness.main([str(model.path), "--n", "4", "--conditions", "clean,canvas"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("clean ", "canvas "))]
    assert len(rows) == 2 and all("%" in r for r in rows), out
    assert "worst difference" in out
    with pytest.raises(SystemExit) as exc:
        robustness.main(["--conditions", "clean,fog"])
    assert exc.value.code == 2 and "--conditions: unknown fog" in capsys.readouterr().err
