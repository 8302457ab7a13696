"""The run page's header and recipe section: a run that failed its health check says what went
wrong, why and the fix before any section; the recipe shows what changed from the notebook's
recipe first, the rest folded, and leaves out the fields the recipe does not read."""

from __future__ import annotations

import re

import pytest
from pagecheck import Page
from pagefolders import make_run

from mnistlab.pages import run_page
from mnistlab.pages.run_pieces import Loaded
from mnistlab.pages.run_sections import _recipe_section
from mnistlab.recipe import Recipe


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    recipe = Recipe(name="raw", epochs=2, hidden=[16], normalize="none", lr=0.5)
    return make_run(tmp_path_factory.mktemp("runs") / "raw", recipe)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    recipe = Recipe(name="ok", epochs=1, hidden=[16], conv_channels=[8])
    return make_run(tmp_path_factory.mktemp("runs") / "ok", recipe)


def _header(text: str) -> str:
    """The page's header: everything before the first section."""
    return text[: text.index("<section")]


def test_a_diverged_run_shows_the_diagnosis_and_the_fix_first(diverged):
    text = run_page.render(diverged)
    head = _header(text)
    assert 'data-box="diagnosis"' in head and "failed its health check" in head
    words = " ".join(re.sub(r"<[^>]+>", " ", head).split())
    assert "training diverged" in words and "the network learns nothing" in words
    assert "Likely cause: the inputs are unscaled raw pixels" in words
    assert "Fix: standardize the inputs" in words
    assert words.count("Likely cause:") == 1  # one diagnosis for both warnings it caused
    assert 'href="#health"' in head


def test_a_healthy_run_has_no_diagnosis_box(healthy):
    text = run_page.render(healthy)
    assert 'data-box="diagnosis"' not in text and "failed its health check" not in text
    assert "badge ok" in _header(text)


def _recipe_page(recipe: Recipe) -> Page:
    body = _recipe_section({"recipe": Loaded(recipe), "evaluation": Loaded(None)})
    return Page(f'<!DOCTYPE html><section id="recipe">{body}</section>')


def test_recipe_lists_the_changes_first_and_folds_the_rest(healthy):
    page = Page(run_page.render(healthy))
    text = page.text("recipe")
    changed = text[text.index("Changed from the notebook's recipe") : text.index("The other")]
    assert "hidden [128, 128, 128] [16]" in changed and "epochs 5 1" in changed
    assert "learning_rate" not in changed  # unchanged: in the folded part
    assert "details" in page.tags and "The other" in text and "learning_rate 0.01" in text
    # conv_channels is set on an MLP: said once as unread, not listed as a field
    assert "Set, but not read by this recipe: conv_channels = [8] (read when kind = cnn)" in text
    for field in ("kernel_size", "plateau_patience", "augment_shift", "weight_decay", "gamma"):
        assert field not in text, field
    assert "momentum 0.9" in text and "nesterov true" in text  # sgd reads them


@pytest.mark.parametrize(
    "recipe, shown, hidden",
    [
        (Recipe(), ["momentum", "nesterov", "warmup_epochs"], ["plateau_factor", "min_lr"]),
        (Recipe(schedule="plateau"), ["plateau_factor", "min_lr", "plateau_monitor"], ["gamma"]),
        (Recipe(schedule="step", gamma=0.5), ["gamma", "step_size"], ["plateau_cooldown"]),
        (Recipe(optimizer="adamw"), ["weight_decay"], ["momentum", "nesterov"]),
        (Recipe(optimizer="rmsprop"), ["momentum"], ["nesterov", "weight_decay"]),
        (Recipe(kind="cnn"), ["conv_channels", "kernel_size"], ["augment_scale"]),
        (Recipe(augment_shift=2.0), ["augment_shift", "augment_rotate"], ["augment_elastic_sigma"]),
        (Recipe(augment_elastic=34.0), ["augment_elastic_sigma"], []),
        (Recipe(early_stopping=2), ["monitor", "restore_best"], []),
        (Recipe(), [], ["monitor", "restore_best", "augment_elastic"]),
    ],
)
def test_recipe_shows_only_the_fields_it_reads(recipe, shown, hidden):
    text = _recipe_page(recipe).text("recipe")
    for field in shown:
        assert f" {field} " in text, field
    for field in hidden:
        assert field not in text, field


def test_a_notebook_recipe_says_it_changes_nothing():
    text = _recipe_page(Recipe()).text("recipe")
    assert "Nothing: this run trains the notebook's recipe." in text
    adamw = _recipe_page(Recipe(optimizer="adamw", lr=0.001)).text("recipe")
    # the notebook (sgd) does not read weight_decay; adamw reads its own 0.004
    assert "optimizer sgd adamw learning_rate 0.01 0.001" in adamw
    assert "weight_decay 0.004" in adamw
