"""Paged listings: each list RPC's page tokens are valid for that RPC only, with a cursor of (created_at in
microseconds, id)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.common.pagination import PagedList, PageTokens

T = TypeVar("T")

LIST_RUNS = PagedList("custody.runs.v1.RunsService/ListRuns", (int, str))
LIST_ATTACHMENTS = PagedList("custody.runs.v1.RunsService/ListAttachments", (int, str))
LIST_ADVISORIES = PagedList("custody.runs.v1.RunsService/ListAdvisories", (int, str))


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def page(
    tokens: PageTokens,
    listing: PagedList,
    fetched: list[T],
    size: int,
    key: dict[str, Any],
    sort_key: Callable[[T], list[Any]],
) -> Page[T]:
    return Page(*tokens.page(listing, fetched, size, key, sort_key))
