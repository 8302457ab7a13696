"""Every command's --help in words: what each option takes (N, X, FILE, RUN), no Python type
names, a default for every recipe flag, one usage style, and an example file where one is
needed; and ``mnistlab presets``."""

import re
import sys
import tomllib

import pytest

from mnistlab.cli import click_command, main
from mnistlab.recipe import SPECS, preset_names

COMMANDS = [[name] for name in click_command().commands if name != "data"] + [
    ["data", name] for name in click_command().commands["data"].commands
]
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|path|list\[.*?\]|int range|float range)>")


def _run(monkeypatch, capsys, *args, columns=250):
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_speaks_in_words_not_python_types(monkeypatch, capsys, command):
    code, out, _ = _run(monkeypatch, capsys, *command, "--help")
    assert code == 0
    assert not PYTHON_TYPES.findall(out), PYTHON_TYPES.findall(out)
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    arguments = re.findall(r"[\[{]([^\]}]+)[\]}]", usage.split("[OPTIONS]")[-1])
    names = [a.split(".")[0] for a in arguments]  # RUN, IMAGE..., FOLDER, SPACE.toml
    assert all(n == n.upper() for n in names), usage


@pytest.mark.parametrize("command", [["train"], ["compare"], ["search"]])
def test_every_recipe_flag_states_its_default(monkeypatch, capsys, command):
    code, out, _ = _run(monkeypatch, capsys, *command, "--help", columns=400)
    assert code == 0
    for name in SPECS:
        if name == "name" and command != ["train"]:
            continue  # compare and search name their runs after variants and trials
        flag = "--" + name.replace("_", "-")
        line = next(x for x in out.splitlines() if re.search(f"^│ {flag}[ ,/]", x))
        assert "default: " in line or "unset: " in line, line


@pytest.mark.parametrize("command,table", [("compare", "variants.adam"), ("search", "space")])
def test_compare_and_search_help_show_an_example_file(monkeypatch, capsys, command, table):
    code, out, _ = _run(monkeypatch, capsys, command, "--help", columns=120)
    assert code == 0 and f"[{table}]" in out and "[base]" in out
    # the example is a real file of its kind
    start = out.index(" name = ")
    lines = []
    for line in out[start:].splitlines()[:9]:
        text = line.strip().strip("│").strip()
        if text:
            lines.append(text.split(" #")[0])
    example = tomllib.loads("\n".join(lines))
    assert "base" in example


def test_train_preset_help_lists_the_names(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, "train", "--help", columns=400)
    line = next(line for line in out.splitlines() if "--preset" in line)
    assert all(name in line for name in preset_names()), line


# ---- presets -------------------------------------------------------------------------------
def test_presets_lists_each_with_one_line(monkeypatch, capsys):
    from mnistlab.experiments.compare import preset_names as compare_presets

    code, out, err = _run(monkeypatch, capsys, "presets")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("recipe presets (mnistlab train --preset NAME)")
    for name in [*preset_names(), *compare_presets()]:
        (line,) = [x for x in lines if x.split()[:1] == [name]]
        assert len(line.split(None, 1)[1]) > 20, line  # a description, not just the name
    notebook = next(x for x in lines if x.split()[:1] == ["notebook"])
    assert "seed notebook's final recipe" in notebook


@pytest.mark.parametrize("name", ["fast-mlp", "beat-the-baseline"])
def test_presets_name_prints_the_toml_to_copy(monkeypatch, capsys, tmp_path, name):
    from mnistlab.experiments import compare
    from mnistlab.recipe import Recipe, load_preset

    code, out, _ = _run(monkeypatch, capsys, "presets", name)
    assert code == 0 and out.startswith("# ")
    (tmp_path / "copy.toml").write_text(out)
    if name in preset_names():
        assert Recipe.from_toml(tmp_path / "copy.toml") == load_preset(name)
    else:
        assert (
            compare.load_variants(tmp_path / "copy.toml").recipes
            == compare.load_preset(name).recipes
        )


def test_an_unknown_preset_is_one_line_with_a_guess(monkeypatch, capsys):
    code, out, err = _run(monkeypatch, capsys, "presets", "fast-mpl")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "unknown preset 'fast-mpl' (did you mean 'fast-mlp'?)" in err
