"""The test helper that starts `custody serve`: a port it picked that another process took before the service
bound it is picked again (tests run in parallel), and a port the caller gave is never silently replaced."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from services.cli.state import StateLayout, initialize
from tests.support import processes


@pytest.fixture
def taken() -> Iterator[int]:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_picked_port_taken_meanwhile_is_picked_again(
    tmp_path: Path, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    real = processes.free_port
    picks = iter([real(), taken])  # the first attempt's metrics port is the taken one
    monkeypatch.setattr(processes, "free_port", lambda: next(picks, None) or real())
    with processes.serving("art_studio", layout.root, tmp_path) as served:
        assert served.metrics_port != taken


def test_a_given_port_that_is_taken_fails_the_start(tmp_path: Path, taken: int) -> None:
    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    with (
        pytest.raises(AssertionError, match="Address already in use"),
        processes.serving("art_studio", layout.root, tmp_path, metrics_port=taken),
    ):
        pass
