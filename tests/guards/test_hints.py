"""Every hint names a command and flags that exist: each `custody ...` in backticks in any message, hint or help
text under services/ (docstrings aside, which address readers of the code) is walked down the CLI's own command
tree, and each --flag it names must be an option of the command it reaches."""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from services.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"`(custody [^`]+)`")
PLACEHOLDER = "X"


def texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String literals and f-strings (placeholders as X), docstrings excluded."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in ast.walk(node)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [p.value if isinstance(p, ast.Constant) else PLACEHOLDER for p in node.values]
            yield node.lineno, "".join(str(p) for p in parts)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in inside_fstrings
        ):
            yield node.lineno, node.value


def hinted_commands() -> Iterator[tuple[str, str]]:
    for path in sorted((ROOT / "services").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Adjacent literals are one string: ast already joins "a" "b"; a command split across a + b is not used.
        for line, text in texts(tree):
            for match in COMMAND.finditer(text):
                yield f"{path.relative_to(ROOT)}:{line}", match.group(1)


def problem(command_line: str, root: Any) -> str | None:
    """What is wrong with a command line, walked down typer's command tree (groups have .commands)."""
    try:
        words = shlex.split(command_line)[1:]
    except ValueError:
        words = command_line.split()[1:]
    command = root
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        found = command.commands.get(words[0])
        if found is None:
            if words[0].isupper() or PLACEHOLDER in words[0] or words[0].startswith("<"):
                return None  # a placeholder where a group expects its command: nothing more to check
            return f"`{command.name} {words[0]}` is not a command"
        command = found
        words = words[1:]
    if hasattr(command, "commands") and words == []:
        return None  # names the group itself (its --help lists the commands)
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in words:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            if flag not in options and flag != "--help":
                return f"{flag} is not an option of `{command.name}` (it has {sorted(options)})"
    return None


def test_every_hinted_command_and_flag_exists() -> None:
    root = typer.main.get_command(app)
    found = list(hinted_commands())
    assert len(found) > 30  # the walk sees the hints (it would pass vacuously on none)
    problems = [f"{where}: `{line}`: {issue}" for where, line in found if (issue := problem(line, root))]
    assert not problems, "\n".join(problems)


def test_the_walk_rejects_a_command_or_flag_that_does_not_exist() -> None:
    root = typer.main.get_command(app)
    assert problem("custody runs frobnicate", root)
    assert problem("custody runs bind --strict=false", root)
    assert problem("custody runs bind RUN --lenient", root) is None
