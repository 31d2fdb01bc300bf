from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.state import StateLayout
from tests.support.harness import ServiceHarness, state_layout


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


@pytest.fixture
def runs(layout: StateLayout) -> Iterator[ServiceHarness]:
    with ServiceHarness("runs", layout) as harness:
        yield harness
