"""What a type registration may do to the registry: the rule the store applies inside its write transaction.

A type belongs to the policy that first registered it, and a registration is immutable: the same (type, schema
version) again is accepted only with the identical definition. The store reads the current owner and the stored
digest under its lock and hands them here, so the check and the insert it guards cannot interleave with another
registration.
"""

from __future__ import annotations

from services.common.errors import AlreadyExists, FailedPrecondition, FieldViolation
from services.lineage.domain.model import TypeDefinition


def check_registration(definition: TypeDefinition, owner: str | None, existing_sha256: str | None) -> bool:
    """True when `definition` is new and should be inserted; False when the identical one is registered.

    `owner` is the policy of the type's existing registrations (None for a new type); `existing_sha256` the digest
    registered under the same schema version (None when there is none).
    """
    if owner is not None and owner != definition.policy:
        raise FailedPrecondition(
            "TYPE_IN_OTHER_POLICY",
            f"type {definition.name!r} belongs to policy {owner!r}, not {definition.policy!r}",
            violations=[FieldViolation("policy", f"must be {owner!r} for type {definition.name!r}")],
        )
    if existing_sha256 is None:
        return True
    if existing_sha256 != definition.definition_sha256:
        raise AlreadyExists(
            "TYPE_VERSION_EXISTS",
            f"type {definition.name!r} schema version {definition.schema_version!r} is registered with a "
            "different definition; registrations are immutable: use a new schema_version",
            metadata={"type": definition.name, "schema_version": definition.schema_version},
        )
    return False
