"""`request_id` idempotency keys on mutating calls (AIP-155): same key and same request returns the original
result; same key and a different request is ALREADY_EXISTS. Stores persist the fingerprint next to the key under
a unique constraint, so concurrent retries converge on one row.
"""

from __future__ import annotations

from typing import Any

from services.common.call_context import is_valid_request_id
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument
from services.common.hashing import sha256_canonical

MAX_REQUEST_ID_LENGTH = 128


def fingerprint(request: dict[str, Any]) -> str:
    """Digest of everything that defines a request except its idempotency key."""
    return sha256_canonical({k: v for k, v in request.items() if k != "request_id"})


def validate_request_id(request_id: str) -> None:
    if request_id and not is_valid_request_id(request_id):
        raise InvalidArgument(
            "REQUEST_ID_INVALID",
            f"request_id must be 1..{MAX_REQUEST_ID_LENGTH} characters of letters, digits and ._:- ",
            violations=[FieldViolation("request_id", "letters, digits and ._:- only, at most 128 characters")],
        )


def ensure_same_request(request_id: str, stored_fingerprint: str, new_fingerprint: str) -> None:
    """Call when a row with this request_id already exists; raises unless it was made by the same request."""
    if stored_fingerprint != new_fingerprint:
        raise AlreadyExists(
            "REQUEST_ID_REUSED",
            f"request_id {request_id!r} was already used for a different request; use a new request_id "
            "for a new request, or resend the original request unchanged to get its result",
            metadata={"request_id": request_id},
        )
