"""Alembic revisions of the lineage database (applied by services.common.migrations.upgrade)."""
