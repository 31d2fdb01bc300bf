"""Every stateful service's migrations apply to an empty database on both backends, and re-applying is a no-op."""

from __future__ import annotations

import pytest

from services.common import migrations
from services.common.catalog import SERVICES
from services.common.db import create_engine

STATEFUL = [name for name, spec in SERVICES.items() if spec.stateful]


@pytest.mark.parametrize("service", STATEFUL)
def test_migrations_reach_head_and_are_idempotent(database_url: str, service: str) -> None:
    engine = create_engine(database_url)
    try:
        migrations.upgrade(engine, service)
        migrations.upgrade(engine, service)
        assert migrations.current_revision(engine, service) == migrations.head_revision(service)
    finally:
        engine.dispose()
