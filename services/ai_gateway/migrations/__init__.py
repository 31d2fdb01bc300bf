"""Alembic revisions of the ai_gateway database (applied by services.common.migrations.upgrade)."""
