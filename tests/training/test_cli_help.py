"""Every training and benchmark CLI explains itself: each option has help, --help shows what
happens without it (its default, or that it is required), and the description keeps the line
breaks of the module docstring it comes from (indented example commands stay copyable).

Each CLI module exposes its parser through `build_parser()`; a new module that defines options
without one, or a new option without help, fails here."""
from __future__ import annotations

import argparse
import ast
import importlib

import pytest

from tests.conftest import REPOSITORY_ROOT
from training.cli import HelpFormatter, parser_for


def cli_modules() -> list[str]:
    """Every training/ and bench/ command (a module run with -m) that defines options; the
    options shared by several commands are checked through the commands that add them."""
    modules = []
    for package in ("training", "bench"):
        for path in sorted((REPOSITORY_ROOT / package).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if "add_argument(" in text and 'if __name__ == "__main__"' in text:
                modules.append(f"{package}.{path.stem}")
    return modules


CLI_MODULES = cli_modules()


def all_parsers(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser and, depth first, those of its sub-commands."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                found += all_parsers(subparser, f"{name} {command}")
    return found


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """What --help prints for one action, on one line."""
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def problems_with_options(parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        if not action.help or not action.help.strip() or action.help == argparse.SUPPRESS:
            problems.append(f"{label}: no help")
            continue
        if isinstance(action, argparse._SubParsersAction):
            problems += [f"{label} {choice.dest}: no help" for choice in action._choices_actions if not choice.help]
            continue
        text = rendered_help(parser, action)
        if action.option_strings:
            wanted = "(required)" if action.required else "(default: "
        elif action.nargs in ("?", "*"):
            wanted = "(default: "
        else:
            continue  # a plain positional is required by its nature
        if wanted not in text:
            problems.append(f"{label}: --help does not say {wanted!r}: {text!r}")
    return problems


@pytest.fixture(scope="module", params=CLI_MODULES)
def cli(request):
    module = importlib.import_module(request.param)
    assert hasattr(module, "build_parser"), f"{request.param} defines options: expose its parser as build_parser()"
    return request.param, module, module.build_parser()


def test_the_clis_are_found():
    assert {"training.train_lm", "training.train_ngram", "training.evaluate_lm", "training.compare_cells",
            "training.data", "bench.gpu", "bench.serve"} <= set(CLI_MODULES)


def test_every_option_has_help_and_shows_its_default(cli):
    name, _, parser = cli
    problems = [f"{command}: {problem}" for command, subparser in all_parsers(parser, name)
                for problem in problems_with_options(subparser)]
    assert not problems, "\n".join(problems)


def test_main_parses_with_build_parser(cli, capsys):
    """The parser the checks here read is the one the CLI runs with."""
    name, module, parser = cli
    with pytest.raises(SystemExit) as exit:
        module.main(["--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == parser.format_help(), f"{name}: main() does not parse with build_parser()"


def test_help_uses_the_shared_formatter(cli):
    name, _, parser = cli
    for command, subparser in all_parsers(parser, name):
        assert subparser.formatter_class is HelpFormatter, f"{command}: build it with training.cli.parser_for"


def test_the_description_keeps_its_line_breaks(cli):
    name, module, parser = cli
    for command, subparser in all_parsers(parser, name):
        description = subparser.description or ""
        assert description.strip(), f"{command}: no description"
        printed = {line.rstrip() for line in subparser.format_help().splitlines()}
        missing = [line for line in description.splitlines() if line.rstrip() not in printed]
        assert not missing, f"{command}: --help rewraps its description: {missing[:3]}"


def test_no_docstring_line_is_joined_by_a_backslash(cli):
    """A backslash at a line's end inside a plain (not raw) docstring joins two lines, e.g. a
    shell command's continuation: `--params 4000000         --run-dir` in --help."""
    name, module, _ = cli
    source = open(module.__file__, encoding="utf-8").read()
    docstring = ast.parse(source).body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant), f"{name}: no module docstring"
    written = ast.get_source_segment(source, docstring)
    assert docstring.value.value.count("\n") == written.count("\n"), \
        f"{name}: its docstring loses line breaks (make it a raw string, r\"\"\"...\"\"\")"


def test_the_formatter_states_defaults_in_words():
    parser = parser_for("One line.\n    an indented command \\\n        continued\n")
    parser.add_argument("--required-path", required=True, help="a path")
    parser.add_argument("--size", type=int, default=3, help="how many")
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="several")
    parser.add_argument("--rate", default="5%", help="a percentage")
    parser.add_argument("--flag", action="store_true", help="turn it on")
    parser.add_argument("--switch", action=argparse.BooleanOptionalAction, default=True, help="on by default")
    parser.add_argument("--limit", type=int, default=None, help="at most this many (default: no limit)")
    parser.add_argument("--unexplained", default=None, help="says nothing of its default")
    text = " ".join(parser.format_help().split())
    assert "a path (required)" in text and "how many (default: 3)" in text and "several (default: none)" in text
    assert "a percentage (default: 5%)" in text and "turn it on (default: off)" in text
    assert "on by default (default: on)" in text and "(default: True)" not in text
    assert "at most this many (default: no limit)" in text and "(default: None)" not in text
    assert "    an indented command \\\n        continued\n" in parser.format_help()
    # The test above catches an option that leaves a default of None unexplained.
    assert problems_with_options(parser) == ["--unexplained: --help does not say '(default: ': "
                                             "'--unexplained UNEXPLAINED says nothing of its default'"]
