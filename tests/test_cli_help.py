"""``--help`` of reconstruct, embed and export describes every option."""

from __future__ import annotations

import argparse

import pytest

from mae_domains.cli import build_parser, main


def subparser(name: str) -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command", ["reconstruct", "embed", "export"])
def test_every_option_has_a_help_text(command, capsys):
    parser = subparser(command)
    for action in parser._actions:
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, \
            f"{command} {'/'.join(action.option_strings) or action.dest}: no help text"
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text
