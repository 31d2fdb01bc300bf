"""The filter forms of the list pages (runs, AI calls), read from the query string.

Every value is checked here before anything is called: a bad one is a problem shown next to its field and the page
calls nothing. The link to the next page repeats the filters with the token, because the services bind a
page_token to the filters it was issued for (a token replayed with other filters is PAGE_TOKEN_INVALID).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

from google.protobuf.timestamp_pb2 import Timestamp

from services.console.pages.formatting import enum_label

# The longest text filter accepted (principal ids, modes, operations and request ids are all far shorter).
MAX_TEXT = 200
# The longest page token passed on; the services' own are a few hundred characters.
MAX_PAGE_TOKEN = 2000


class ProtoEnum(Protocol):
    """A generated proto enum (its names and numbers)."""

    def items(self) -> Iterable[tuple[str, int]]: ...


@dataclass(frozen=True)
class FilterField:
    """One control of the filter form, as the template draws it."""

    name: str
    label: str
    value: str
    # A select's options (its values, shown as they are); empty for a text or time input.
    options: tuple[str, ...] = ()
    input_type: str = "text"
    placeholder: str = ""
    problem: str = ""


@dataclass
class FilterForm:
    """The filters of one list page as submitted: what each field holds and what is wrong with it."""

    params: Mapping[str, str]
    fields: list[FilterField] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{f.label}: {f.problem}" for f in self.fields if f.problem]

    @property
    def active(self) -> bool:
        return any(f.value for f in self.fields)

    def text(self, name: str, label: str, placeholder: str = "") -> str:
        value = self._raw(name)
        problem = f"at most {MAX_TEXT} characters" if len(value) > MAX_TEXT else ""
        if not problem and any(not c.isprintable() for c in value):
            problem = "printable characters only"
        self.fields.append(
            FilterField(name, label, value if not problem else "", placeholder=placeholder, problem=problem)
        )
        return "" if problem else value

    def choice(self, name: str, label: str, enum: ProtoEnum, prefix: str) -> int:
        """One value of a proto enum, offered by its label (`RUN_STATUS_BLOCKED` as `blocked`); 0 when none."""
        choices = {enum_label(n, prefix): v for n, v in enum.items() if v != 0}
        value = self._raw(name).lower()
        problem = "" if not value or value in choices else f"one of {', '.join(choices)}"
        self.fields.append(FilterField(name, label, "" if problem else value, options=tuple(choices), problem=problem))
        return 0 if problem else choices.get(value, 0)

    def time(self, name: str, label: str) -> Timestamp | None:
        """A moment given as an ISO 8601 date or date and time; UTC unless it names its own offset."""
        value = self._raw(name)
        moment, problem = None, ""
        if value:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                problem = "a date (2024-05-31) or a date and time (2024-05-31T14:30), in UTC"
        self.fields.append(
            FilterField(name, label, "" if problem else value, input_type="datetime-local", problem=problem)
        )
        if moment is None:
            return None
        stamp = Timestamp()
        stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        return stamp

    def require_order(self, after: Timestamp | None, before: Timestamp | None, name: str) -> None:
        """An empty time range is refused here, as the services would refuse it."""
        if after is not None and before is not None and after.ToDatetime() >= before.ToDatetime():
            self.fields = [
                replace(f, problem="must be later than the start of the range") if f.name == name else f
                for f in self.fields
            ]

    def page_token(self) -> str:
        """Passed on as given: the service checks it (and refuses one altered or issued for other filters)."""
        return self._raw("page_token", MAX_PAGE_TOKEN)

    def next_page(self, path: str, token: str) -> str:
        """The link to the next page: these filters and the service's token."""
        if not token:
            return ""
        kept = [(f.name, f.value) for f in self.fields if f.value]
        return f"{path}?{urlencode([*kept, ('page_token', token)])}"

    def _raw(self, name: str, limit: int = MAX_TEXT) -> str:
        # A little past the limit, so that an over-long value is reported rather than silently cut.
        return str(self.params.get(name, "")).strip()[: limit + 1]
