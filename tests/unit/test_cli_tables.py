"""CLI tables fold long cells onto more lines instead of cutting them: a resource name is always whole."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from services.cli.output import table

NAME = "projects/acme/artifacts/strategy/rosette-design-with-a-long-entity-name/versions/12"


def test_a_name_wider_than_the_terminal_is_folded_not_cut() -> None:
    out = io.StringIO()
    printed = table("name", "status")
    printed.add_row(Text(NAME), Text("APPROVED"))
    Console(file=out, width=40).print(printed)
    rendered = out.getvalue()
    assert "…" not in rendered
    cells = "".join(line.split("│")[1].strip() for line in rendered.splitlines() if line.count("│") >= 2)
    assert NAME in cells
