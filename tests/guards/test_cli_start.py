"""The CLI starts without the server and database stack: `custody runs list` and every other client command pay
only for what talking to a service needs (services/cli/main.py imports the rest inside the commands using it)."""

from __future__ import annotations

import subprocess
import sys

SERVER_STACK = ("services.common.server", "services.common.migrations", "sqlalchemy", "alembic", "uvloop")


def test_importing_the_cli_loads_no_server_or_database_module() -> None:
    probe = f"import sys, services.cli.main; print([m for m in {SERVER_STACK!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
