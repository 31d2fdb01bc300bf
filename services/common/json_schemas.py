"""JSON Schema (Draft 2020-12) checks, in one place: lineage checks a type's schema when it is registered and a
version's data when it is created, and the recipe driver checks module manifests and stage data with the same
functions before it calls lineage. Each problem is one BadRequest field violation with a JSON Pointer, so a
client can show all of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from services.common.errors import FieldViolation

MAX_VIOLATIONS = 100


def _pointer(path: Any) -> str:
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)


def _sorted(errors: list[SchemaValidationError]) -> list[SchemaValidationError]:
    return sorted(errors, key=lambda e: (_pointer(e.absolute_path), e.validator or "", e.message))


def schema_violations(schema: Mapping[str, Any]) -> list[FieldViolation]:
    """Problems that make `schema` not a valid Draft 2020-12 schema ("schema/<pointer>")."""
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    errors = _sorted(list(meta.iter_errors(schema)))[:MAX_VIOLATIONS]
    return [FieldViolation(f"schema{_pointer(e.absolute_path)}", e.message) for e in errors]


def data_violations(schema: Mapping[str, Any], data: Any) -> list[FieldViolation]:
    """Every way `data` violates `schema` ("data/<pointer>"), in a stable order."""
    validator = Draft202012Validator(schema)
    errors = _sorted(list(validator.iter_errors(data)))[:MAX_VIOLATIONS]
    return [FieldViolation(f"data{_pointer(e.absolute_path)}", e.message) for e in errors]
