"""Variants and search spaces build their recipes through the recipe's own checks: a value out of
a field's range is the same one-line error, naming the file and the variant or space entry."""

import pytest

from mnistlab.errors import RecipeError
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import search as srch


@pytest.mark.parametrize(
    "text,where,expected",
    [
        (
            "[space]\nkernel_size = { low = 3, high = 7 }\n",
            "[space] kernel_size field 'kernel_size'",
            "an odd integer from 1 to 7, got 4",  # an even size inside the range is refused too
        ),
        (
            "[space]\nlr = { low = 1e-4, high = 100.0, log = true }\n",
            "[space] learning_rate field 'learning_rate'",
            "a number in (0, 10], got 100.0",
        ),
        (
            "[base]\naugment_shift = 1e39\n[space]\nlr = { low = 0.01, high = 0.1 }\n",
            "[base] field 'augment_shift'",
            "a number of pixels in [0, 14], got 1e+39",
        ),
    ],
)
def test_a_space_out_of_range_names_the_file_and_entry(tmp_path, text, where, expected):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        srch.load_space(path)
    assert str(err.value) == f"{path} {where}: expected {expected}"


def test_a_space_of_odd_kernel_sizes_is_accepted(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("[base]\nkind = 'cnn'\n[space]\nkernel_size = {low = 3, high = 7, step = 2}\n")
    assert srch.load_space(path).params["kernel_size"].low == 3


@pytest.mark.parametrize(
    "text,where,expected",
    [
        (
            "[variants.wide]\naugment_elastic_sigma = 1e308\n",
            "variant 'wide' field 'augment_elastic_sigma'",
            "a number of pixels in [0.1, 20], got 1e+308",
        ),
        (
            "[base]\nepochs = 0\n[variants.a]\n",
            "[base] field 'epochs'",
            "an integer from 1 to 10000, got 0",
        ),
    ],
)
def test_a_variant_out_of_range_names_the_file_and_variant(tmp_path, text, where, expected):
    path = tmp_path / "variants.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        cmp.load_variants(path)
    assert str(err.value) == f"{path} {where}: expected {expected}"
