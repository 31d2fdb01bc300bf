"""Alembic revisions of the runs database (applied by services.common.migrations.upgrade)."""
