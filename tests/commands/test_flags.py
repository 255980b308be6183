import argparse
import collections.abc
import typing

import pytest
import yaml

from trainwell.cli import build_parser, main
from trainwell.commands.flags import excluded_fields, flag_name, members, value_reader
from trainwell.commands.train import given_options, run_flags
from trainwell.config import TrainConfig
from trainwell.recipes import DATA_OPTIONS, MODEL_OPTIONS, RunConfig, option_group


def _is_callable_type(member):
    return member is collections.abc.Callable or typing.get_origin(member) is collections.abc.Callable


def test_every_config_field_has_a_flag_or_is_a_callable():
    flags = {flag.field: flag for flag in run_flags()}
    for name, info in RunConfig.model_fields.items():
        if name in flags:
            assert flags[name].name == flag_name(name)
            assert flags[name].options["help"].strip(), f"{name} has no help: document it in the class docstring's Args"
            continue
        # The documented rule, and no other reason: every type the field takes is a callable.
        values = [m for m in members(info.annotation) if m is not type(None)]
        assert values and all(_is_callable_type(m) for m in values), f"{name} has no flag but is not a callable"
    assert set(flags) | set(excluded_fields(RunConfig)) == set(RunConfig.model_fields)
    assert set(TrainConfig.model_fields) - set(excluded_fields(TrainConfig)) <= set(flags)


def _words(flag, value):
    """The command-line words that set ``flag`` to ``value``."""
    options = flag.options
    if options.get("action") is argparse.BooleanOptionalAction:
        return [flag.name if value else "--no-" + flag.name[2:]]
    if isinstance(value, dict):
        spell = lambda item: ",".join(map(str, item)) if isinstance(item, list) else "none" if item is None else item  # noqa: E731
        return [w for key, item in value.items() for w in (flag.name, f"{key}={spell(item)}")] or None
    if isinstance(value, list):
        return [flag.name, *map(str, value)] if value else None
    return [flag.name, "none" if value is None else str(value)]


def test_each_flag_sets_its_option():
    """Every generated flag, given the option's resolved default, reads back that value."""
    parser = build_parser()
    resolved = RunConfig()
    for flag in run_flags():
        value = getattr(resolved, flag.field)
        if callable(value):
            continue  # a callable default (a function set in Python) has no command-line spelling
        words = _words(flag, value.tolist() if hasattr(value, "tolist") else value)
        if words is None:
            continue
        args, extras = parser.parse_known_args(["train", *words])
        assert not extras, (flag.name, extras)
        given, names = given_options(args, run_flags())
        assert list(given) == [flag.field] and names == {flag.field: flag.name}
        config = RunConfig(**given)
        assert getattr(config, flag.field) == value or (flag.field == "run_dir" and str(config.run_dir) == str(value))


def test_flags_left_out_set_nothing():
    args = build_parser().parse_args(["train"])
    assert given_options(args, run_flags()) == ({}, {})


def test_values_are_read_by_the_field_type():
    read = value_reader([float, type(None)])
    assert read("3") == 3 and read("1e-3") == 0.001 and read("none") is None and read("x") == "x"


def test_help_lists_the_sections_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "data (what to read" in out and "model (what to build" in out and "training (how to train" in out
    assert "--schedule {onecycle,cosine,constant}" in out and "--early-stopping-patience INT|none" in out
    assert "--compile, --no-compile" in out and "--run-dir DIR, --out DIR" in out
    assert "--loss-fn" not in out


def test_every_option_belongs_to_one_config_section():
    for name in (*DATA_OPTIONS, *MODEL_OPTIONS):
        assert name in RunConfig.model_fields
    assert option_group("epochs") == "train" and option_group("batch_size") == "train"


def test_print_config_round_trips_through_config(tmp_path, capsys):
    flags = [
        "--data",
        "iris",
        "--epochs",
        "7",
        "--weight-decay",
        "0.05",
        "--model-arg",
        "dropout=0.3",
        "--no-restore-best-weights",
    ]
    assert main(["train", *flags, "--print-config"]) == 0
    printed = capsys.readouterr().out
    sections = yaml.safe_load(printed)
    assert list(sections) == ["data", "model", "train"]
    assert sections["data"]["data"] == "iris" and sections["model"]["model_args"]["dropout"] == 0.3
    assert sections["train"]["epochs"] == 7 and sections["train"]["restore_best_weights"] is False
    assert "loss_fn" not in sections["train"] and not (tmp_path / "runs").exists()
    config = tmp_path / "run.yaml"
    config.write_text(printed)
    assert main(["train", "--config", str(config), "--print-config"]) == 0
    assert capsys.readouterr().out == printed


def test_print_config_keeps_lr_auto(capsys):
    assert main(["train", "--lr", "auto", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["lr"] == "auto"


@pytest.mark.parametrize(
    ("content", "message", "absent"),
    [
        ("train:\n  epoch: 3\n", "'epoch' is not an option of the train: section. Did you mean 'epochs'?", "target"),
        (
            "data:\n  tagret: y\n",
            "'tagret' is not an option of the data: section. Did you mean 'target'? "
            "The data: options are: data, data_dir, data_format, target,",
            "epochs",
        ),
        (
            "model:\n  model_arg: {}\n",
            "Did you mean 'model_args'? The model: options are: model, model_args.",
            "epochs",
        ),
        ("train:\n  target: y\n", "'target' is an option of the data: section, not train: move it there.", "epochs"),
    ],
)
def test_a_wrong_key_of_a_section_names_that_section_only(tmp_path, capsys, content, message, absent):
    config = tmp_path / "run.yaml"
    config.write_text(content)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and absent not in err.split("options are:")[-1]
    assert not (tmp_path / "run").exists()


def test_a_grouped_config_file_sets_its_options(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        "data:\n  data: iris\n  val_fraction: 0.25\nmodel:\n  model_args: {hidden: [8]}\ntrain:\n  epochs: 4\n"
    )
    assert main(["train", "--config", str(config), "--print-config"]) == 0
    sections = yaml.safe_load(capsys.readouterr().out)
    assert (
        sections["data"]["val_fraction"],
        sections["model"]["model_args"]["hidden"],
        sections["train"]["epochs"],
    ) == (0.25, [8], 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--epoch", "3"],
            "trainwell train: error: unrecognized arguments: --epoch 3; did you mean --epochs?",
        ),
        (["train", "--epo", "3"], "trainwell train: error: unrecognized arguments: --epo 3; did you mean --epochs?"),
        (["trian"], "invalid choice: 'trian'"),
        (
            ["bench", "precision", "--stepz", "3"],
            "trainwell bench precision: error: unrecognized arguments: --stepz 3; did you mean --steps?",
        ),
        (
            ["eval", "runs/x", "--batchsize", "3"],
            "trainwell eval: error: unrecognized arguments: --batchsize 3; did you mean --batch-size?",
        ),
    ],
)
def test_unknown_flags_are_named_with_the_subcommand_and_a_suggestion(capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if args == ["trian"]:
        assert "did you mean train?" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "digit"], "data='digit' is not a known dataset. Did you mean 'digits'?"),
        (
            ["--model", "cnnn"],
            "--model='cnnn' is not a valid choice: expected one of 'mlp', 'cnn', 'lstm', 'gru', 'rnn', 'transformer'. Did you mean 'cnn'?",
        ),
        (["--schedule", "onecylce"], "Did you mean 'onecycle'?"),
    ],
)
def test_did_you_mean_for_data_and_model_names(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_readme_shows_the_real_help(monkeypatch):
    """The README's `trainwell train --help` is the command's own, so no flag is missing from it."""
    from pathlib import Path

    monkeypatch.setenv("COLUMNS", "100")
    parser = build_parser().subcommands["train"]
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("<summary>The full <code>trainwell train --help</code></summary>")[1]
    shown = shown.split("```text\n", 1)[1].split("\n```", 1)[0]
    assert shown == parser.format_help().rstrip("\n"), (
        "README.md's help block is out of date: regenerate it from `COLUMNS=100 trainwell train --help`"
    )
