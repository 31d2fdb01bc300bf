"""Where operator commands find replicas: `custody demo --<service>-address A,B`, checked as the services check their
own addresses, and the endpoints file, whose entries may list a service's replicas."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from services.cli.main import app
from services.cli.state import StateLayout, endpoints, initialize, save_endpoints


def test_demo_refuses_a_list_of_host_names_before_calling_anything(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    result = CliRunner().invoke(
        app, ["demo", "--state-dir", str(layout.root), "--runs-address", "runs-0:50052,runs-1:50052"]
    )
    assert result.exit_code == 2
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # Rich draws a box around the error
    assert "--runs-address" in said and "'runs-0:50052' in the address list does not name an IP address" in said


def test_the_endpoints_file_may_list_replicas_as_one_string_or_a_list(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path / "var")
    save_endpoints(layout, {"runs": "127.0.0.1:1,127.0.0.1:2"})
    document = json.loads(layout.endpoints.read_text())
    document["lineage"] = ["127.0.0.1:3", "127.0.0.1:4"]
    layout.endpoints.write_text(json.dumps(document))
    found = endpoints(layout)
    assert (found["runs"], found["lineage"]) == ("127.0.0.1:1,127.0.0.1:2", "127.0.0.1:3,127.0.0.1:4")
