"""Small renderings the pages share: enum labels, ages, JSON for reading."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from services.common.clock import parse_rfc3339, utc_now


def enum_label(value_name: str, prefix: str) -> str:
    """`STATUS_FLAGGED_FOR_REVIEW` -> `flagged for review`."""
    return value_name.removeprefix(prefix).replace("_", " ").lower()


def age(timestamp: str, now: datetime | None = None) -> str:
    """How long ago an RFC 3339 time was, coarsely ("3 min", "2 h", "5 d")."""
    if not timestamp:
        return ""
    try:
        then = parse_rfc3339(timestamp)
    except ValueError:
        return timestamp
    seconds = max(0, int(((now or utc_now()) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def timestamp(message: Message, field_name: str) -> str:
    """A Timestamp field as RFC 3339, or empty when it is unset (never shown as 1970-01-01)."""
    return str(getattr(message, field_name).ToJsonString()) if message.HasField(field_name) else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def message_json(message: Message) -> str:
    return pretty_json(MessageToDict(message, preserving_proto_field_name=True))
