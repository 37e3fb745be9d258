"""One command-line style: settings and overrides as KEY=VALUE after the options in every command (``--set``
kept as a deprecated alias), the model as ``--run`` in every command that reads one (``segment MODEL`` kept,
deprecated), and ``--device`` / ``--batch-size`` spelled alike wherever a command computes."""

from __future__ import annotations

import argparse

import pytest

from mae_domains.cli import build_config, build_parser, split_overrides, unify_settings


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    split_overrides(args)
    unify_settings(args)
    return args


def subparser(name: str) -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options(name: str) -> set[str]:
    return {o for a in subparser(name)._actions for o in a.option_strings}


def test_evaluate_takes_settings_like_every_other_command(capsys):
    args = parse(["evaluate", "--run", "r", "--test", "t", "--protocol", "knn", "k=3", "pool=avg", "--batch-size", "8"])
    assert args.set == ["k=3", "pool=avg", "batch_size=8"] and args.device == "auto"
    assert capsys.readouterr().err == ""
    old = parse(["evaluate", "--run", "r", "--test", "t", "--set", "k=3"])
    assert old.set == ["k=3"] and "--set is deprecated" in capsys.readouterr().err


def test_segment_takes_the_model_as_run(capsys):
    args = parse(["segment", "--run", "m", "a.tif", "b.tif", "--out", "o", "steps=5", "--device", "cpu"])
    assert (args.model, args.scenes, args.set, args.device) == ("m", ["a.tif", "b.tif"], ["steps=5"], "cpu")
    assert capsys.readouterr().err == ""
    old = parse(["segment", "m", "a.tif", "--out", "o", "--set", "steps=5"])
    assert (old.model, old.scenes, old.set) == ("m", ["a.tif"], ["steps=5"])
    err = capsys.readouterr().err
    assert "give it with --run MODEL" in err and "--set is deprecated" in err
    with pytest.raises(SystemExit):
        parse(["segment", "--out", "o"])


def test_pretrain_device_and_batch_size_flags_set_the_engine():
    config = build_config(parse(["pretrain", "--adapter", "image", "--data", "x", "--device", "cpu",
                                 "--batch-size", "8", "model.preset=tiny"]))
    assert (config.engine.device, config.engine.batch_size, config.model.preset) == ("cpu", 8, "tiny")
    assert build_config(parse(["pretrain", "--adapter", "image", "--data", "x"])).engine.device == "auto"


@pytest.mark.parametrize("command", ["pretrain", "embed", "evaluate", "segment", "reconstruct"])
def test_computing_commands_spell_device_and_batch_size_alike(command):
    assert {"--device", "--batch-size"} <= options(command)


@pytest.mark.parametrize("command", ["reconstruct", "embed", "evaluate", "segment", "export"])
def test_commands_that_read_a_model_take_run(command):
    assert "--run" in options(command)
