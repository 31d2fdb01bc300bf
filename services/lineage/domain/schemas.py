"""Lineage's JSON Schema checks: they live in services.common.json_schemas, shared with the recipe driver; this
module keeps the name lineage's domain imports them by."""

from __future__ import annotations

from services.common.json_schemas import MAX_VIOLATIONS, data_violations, schema_violations

__all__ = ["MAX_VIOLATIONS", "data_violations", "schema_violations"]
