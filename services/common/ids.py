"""Server-generated identifiers: a type prefix and 128 random bits, validated against one strict pattern.

128 bits (32 hex characters) make collisions negligible at any realistic scale, unlike 48-bit ids (a collision is
likely after about 2^24 of those). The pattern admits nothing that could act as a path (no dots, slashes or
separators).
"""

from __future__ import annotations

import re
import secrets

ID_HEX_LENGTH = 32


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(ID_HEX_LENGTH // 2)}"


def id_regex(prefix: str) -> str:
    """An id's pattern without anchors, to embed in the grammar of a resource name."""
    return rf"{re.escape(prefix)}_[0-9a-f]{{{ID_HEX_LENGTH}}}"


def id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{id_regex(prefix)}$")
