"""Recipe: defaults are the notebook's, TOML round trip, aliases, precise validation errors."""

import pytest

from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe, fields_help, load_preset, preset_names


def test_defaults_are_the_notebooks_final_recipe():
    r = Recipe()
    assert (r.hidden, r.activation, r.kind) == ([128, 128, 128], "relu", "mlp")
    assert (r.optimizer, r.learning_rate, r.decay, r.nesterov) == ("sgd", 0.01, 1e-6, True)
    assert r.momentum is None and r.resolved().momentum == 0.9  # sgd: the notebook's momentum
    assert (r.batch_size, r.epochs, r.validation_split, r.normalize) == (32, 5, 0.3, "standardize")
    r.validate()


def test_toml_round_trip(tmp_path):
    r = Recipe(
        name="wide",
        hidden=[256, 64],
        optimizer="adam",
        learning_rate=1e-3,
        dropout=0.2,
        threads=1,
        dataset="fashion-mnist",
    )
    r.to_toml(tmp_path / "r.toml")
    text = (tmp_path / "r.toml").read_text()
    assert "[optimizer]" in text and "[model]" in text
    assert Recipe.from_toml(tmp_path / "r.toml") == r


def test_unset_optional_fields_are_left_out_of_toml():
    assert "threads" not in Recipe().to_toml() and "data_dir" not in Recipe().to_toml()


def test_lr_is_an_alias_and_flat_tables_are_accepted(tmp_path):
    (tmp_path / "r.toml").write_text("lr = 0.05\nepochs = 2\n[optimizer]\nmomentum = 0.5\n")
    r = Recipe.from_toml(tmp_path / "r.toml")
    assert (r.learning_rate, r.epochs, r.momentum) == (0.05, 2, 0.5)
    assert Recipe().replace(lr=0.2).learning_rate == 0.2


def test_alias_and_name_together_is_an_error():
    with pytest.raises(RecipeError, match="given twice"):
        Recipe.from_dict({"lr": 0.1, "learning_rate": 0.2})


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("learning_rate", -0.1, r"a number in \(0, 10\]"),
        ("learning_rate", 0, r"a number in \(0, 10\]"),
        ("batch_size", 0, "an integer from 1 to 60000"),
        ("batch_size", 3.5, "an integer from 1 to 60000"),
        ("optimizer", "adamax", "one of sgd, adam, adamw, nadam, rmsprop, adagrad, adadelta"),
        ("validation_split", 1.0, r"a number in \[0, 1\)"),
        ("validation_split", -0.2, r"a number in \[0, 1\)"),
        ("normalize", "zscore", "one of standardize, scale, none"),
        ("hidden", [128, 0], "a list of at most 32 integers from 1 to 65536"),
        ("nesterov", "yes", "true or false"),
        ("name", "../escape", "letters, digits"),
        ("engine", "turbo", "one of auto, fast, reference"),
        ("learning_rate", float("inf"), r"a number in \(0, 10\]"),
        ("decay", float("inf"), r"a number in \[0, 1\]"),
        ("l2", float("inf"), r"a number in \[0, 1\]"),
        ("max_norm", -1.0, r"a number in \[0, 100\]"),
        ("warmup_epochs", float("inf"), r"a number in \[0, 10000\]"),
    ],
)
def test_invalid_values_name_the_field_and_what_is_allowed(field, value, expected):
    with pytest.raises(RecipeError, match=f"field '{field}': expected {expected}"):
        Recipe.from_dict({field: value})


def test_unknown_key_in_toml_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[optimizer]\nlearning_rte = 0.1\n")
    with pytest.raises(RecipeError) as err:
        Recipe.from_toml(path)
    msg = str(err.value)
    assert str(path) in msg and "learning_rte" in msg and "did you mean 'learning_rate'" in msg
    assert "\n" not in msg


def test_broken_toml_and_missing_file_are_one_line_errors(tmp_path):
    (tmp_path / "x.toml").write_text("epochs = = 3")
    with pytest.raises(RecipeError, match="not valid TOML"):
        Recipe.from_toml(tmp_path / "x.toml")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        Recipe.from_toml(tmp_path / "missing.toml")


def test_cnn_with_more_conv_blocks_than_the_image_allows_is_refused():
    Recipe(kind="cnn", conv_channels=[4] * 4).validate()  # 28 -> 1 pixel: still trainable
    with pytest.raises(RecipeError, match="field 'conv_channels': expected at most 4 conv blocks"):
        Recipe(kind="cnn", conv_channels=[4] * 5)
    with pytest.raises(RecipeError, match="field 'conv_channels': expected at least one"):
        Recipe(kind="cnn", conv_channels=[])
    Recipe(kind="mlp", conv_channels=[4] * 5).validate()  # ignored by an MLP


def test_binary_file_as_recipe_is_a_recipe_error(tmp_path):
    (tmp_path / "x.toml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(RecipeError, match=r"x\.toml: not valid TOML \(not UTF-8"):
        Recipe.from_toml(tmp_path / "x.toml")


def test_every_field_has_help_stating_what_it_accepts_and_its_default():
    help_ = fields_help()
    assert set(help_) == set(Recipe.__dataclass_fields__)
    assert help_["optimizer"].endswith(
        "one of sgd, adam, adamw, nadam, rmsprop, adagrad, adadelta; default: sgd"
    )
    assert "an integer from 1 to 60000; default: 32" in help_["batch_size"]
    assert "(alias: lr)" in help_["learning_rate"]
    # a per-optimizer field states each optimizer's value from the optimizer table
    assert help_["momentum"].endswith("unset: sgd 0.9, rmsprop 0")
    assert help_["weight_decay"].endswith("unset: adamw 0.004")
    assert "\n" not in "".join(help_.values())


def test_presets_load_and_validate():
    for name in preset_names():
        assert isinstance(load_preset(name), Recipe)
    with pytest.raises(RecipeError, match="unknown preset"):
        load_preset("no-such-preset")


def test_per_optimizer_defaults_fill_only_unset_fields(tmp_path):
    # rmsprop with sgd's 0.9 momentum diverged out of the box; adamw with 0 decay was plain adam.
    assert Recipe(optimizer="rmsprop").resolved().momentum == 0.0
    assert Recipe(optimizer="adamw").resolved().weight_decay == 0.004
    assert Recipe(optimizer="adam").resolved().weight_decay == 0.0
    assert Recipe(optimizer="rmsprop", momentum=0.5).resolved().momentum == 0.5  # explicit wins
    assert Recipe(optimizer="adamw", weight_decay=0.0).resolved().weight_decay == 0.0
    # an unset field stays unset in TOML, and comes back unset
    Recipe(optimizer="rmsprop").to_toml(tmp_path / "r.toml")
    assert Recipe.from_toml(tmp_path / "r.toml").momentum is None


def test_compose_base_then_changes(tmp_path):
    assert Recipe.compose() == Recipe()
    (tmp_path / "r.toml").write_text("epochs = 7\nlr = 0.05\n")
    r = Recipe.compose(tmp_path / "r.toml", lr=0.2, hidden=[8])
    assert (r.epochs, r.learning_rate, r.hidden) == (7, 0.2, [8])  # the flag wins over the file
    p = Recipe.compose(preset="fast-mlp", epochs=1)
    assert p.epochs == 1 and p.batch_size == load_preset("fast-mlp").batch_size
    with pytest.raises(RecipeError, match="not both"):
        Recipe.compose(tmp_path / "r.toml", "fast-mlp")
    with pytest.raises(RecipeError, match="given twice"):
        Recipe.compose(lr=0.1, learning_rate=0.2)
    with pytest.raises(RecipeError, match="field 'batch_size'"):
        Recipe.compose(preset="notebook", batch_size=0)


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"early_stopping": -1}, "field 'early_stopping': expected an integer from 0 to 10000"),
        ({"early_stopping": 1.5}, "field 'early_stopping': expected an integer from 0 to 10000"),
        ({"early_stopping": 2, "validation_split": 0.0}, "field 'early_stopping': expected 0 when"),
        ({"monitor": "loss"}, "field 'monitor': expected one of val_loss, val_accuracy"),
        ({"restore_best": "yes"}, "field 'restore_best': expected true or false"),
    ],
)
def test_early_stopping_fields_are_validated(changes, words):
    with pytest.raises(RecipeError, match=words):
        Recipe().replace(**changes)
    Recipe(early_stopping=3, monitor="val_accuracy", restore_best=False).validate()


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("threads", 100_000, "an integer from 1 to 256"),
        ("name", "a" * 201, ".*, at most 200"),
    ],
)
def test_sizes_a_folder_or_a_cpu_cannot_take_are_refused(field, value, expected):
    with pytest.raises(RecipeError, match=f"field '{field}': expected {expected}"):
        Recipe(**{field: value}).validate()


def test_a_relative_data_dir_in_a_recipe_file_is_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "r.toml").write_text('[data]\ndata_dir = "../mnist"\n')
    monkeypatch.chdir("/")  # the command runs somewhere else
    r = Recipe.from_toml(tmp_path / "exp" / "r.toml")
    assert r.data_dir == str((tmp_path / "mnist").resolve())
    (tmp_path / "abs.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert Recipe.from_toml(tmp_path / "abs.toml").data_dir == str(tmp_path / "data")


# ---- checked when built ------------------------------------------------------------------------
def test_a_recipe_is_checked_when_built_and_cannot_change_afterwards():
    import dataclasses

    assert Recipe(lr=0.1).learning_rate == 0.1  # the notebook's spelling, in Python too
    with pytest.raises(RecipeError, match="field 'batch_size': expected an integer from 1"):
        Recipe(batch_size=0)
    with pytest.raises(RecipeError, match="field 'epochs'"):
        dataclasses.replace(Recipe(), epochs=0)
    with pytest.raises(RecipeError, match="field 'epochs'"):
        Recipe().replace(epochs=0)
    with pytest.raises(RecipeError, match="given twice"):
        Recipe(lr=0.1, learning_rate=0.2)
    with pytest.raises(RecipeError, match="unknown key 'learning_rte'.*'learning_rate'"):
        Recipe(learning_rte=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Recipe().epochs = 0  # would skip the check


def test_a_file_names_itself_in_the_error(tmp_path):
    (tmp_path / "r.toml").write_text("[fit]\nbatch_size = 0\n")
    with pytest.raises(RecipeError) as err:
        Recipe.from_toml(tmp_path / "r.toml")
    assert str(err.value) == (
        f"{tmp_path / 'r.toml'} field 'batch_size': expected an integer from 1 to 60000, got 0"
    )


def test_sections_come_from_the_field_declarations():
    from mnistlab.recipe import SECTIONS, SPECS

    assert list(SECTIONS) == ["data", "model", "optimizer", "fit", "augment"]
    assert [n for n, s in SPECS.items() if s.section is None] == ["name"]
    d = Recipe().to_dict()
    assert set(d) == {"name", *SECTIONS}
    for section, names in SECTIONS.items():
        assert all(SPECS[n].section == section for n in names)
        assert set(d[section]) <= set(names)
