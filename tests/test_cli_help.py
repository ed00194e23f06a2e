"""Every ``servelab`` command explains itself: each option has help, shows its default where it
has one (and never ``(default: None)``), and the help ends with examples that still parse."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

import pytest

from loadtests.cli.app import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skipped = (argparse._HelpAction, argparse._SubParsersAction)
    return [action for action in parser._actions if not isinstance(action, skipped)]


def _shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as ``--help`` prints it (defaults added, ``%`` expanded)."""
    return parser._get_formatter()._expand_help(action)


def _help_output(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``servelab PATH... -h`` prints (``locust`` prints its own help and returns)."""
    code: object
    try:
        code = main([*path, "-h"])
    except SystemExit as exc:  # argparse's own -h
        code = exc.code
    assert code in (0, None)
    return capsys.readouterr().out


def _examples(text: str) -> list[str]:
    _, marker, tail = text.partition("\nexamples:\n")
    assert marker, f"no examples section in:\n{text}"
    return [line.strip() for line in tail.splitlines() if line.strip()]


def test_the_walk_finds_every_command() -> None:
    expected = {
        "serve rest", "serve grpc", "batch score", "stream", "edge run", "edge bundle", "run",
        "bench", "sweep", "demo", "report", "compare", "locust", "import-locust", "recompute",
    }  # fmt: skip
    assert expected <= {" ".join(path) for path in COMMANDS}


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "servelab")
def test_every_option_has_help_and_shows_its_default(path: tuple[str, ...]) -> None:
    parser = COMMANDS[path]
    for action in _options(parser):
        name = "/".join(action.option_strings) or action.dest
        assert (action.help or "").strip(), f"servelab {' '.join(path)} {name}: no help"
        assert action.help is not None
        shown = _shown_help(parser, action)
        valued = action.option_strings and action.nargs != 0  # flags are off by default
        if valued and action.default is not None and action.default != []:
            assert "default" in shown.lower(), f"{name}: default {action.default!r} not shown"
        stated = action.help.lower().count("default")
        assert not stated or shown.lower().count("default") == stated, f"{name}: twice: {shown!r}"
    assert "(default: None)" not in parser.format_help()


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "servelab")
def test_every_help_ends_with_examples_that_parse(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    examples = _examples(_help_output(path, capsys))
    assert len(examples) >= 2
    for example in examples:
        assert example.startswith("servelab "), f"not an example command: {example!r}"
        words = shlex.split(example)[1:]
        if "<" in words:  # a shell redirect, not an argument
            words = words[: words.index("<")]
        build_parser().parse_args(words)  # a renamed option fails here (UsageError)
