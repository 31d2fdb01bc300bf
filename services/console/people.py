"""Who is signed in: the principal the services authenticate for the token in the session cookie.

The console never decides who someone is; it asks lineage (GetServiceInfo), which answers with the principal its
credentials file names for the token. Only people may sign in: a service token is refused, so that nothing done
through the console is ever recorded as a service's act.
"""

from __future__ import annotations

from dataclasses import dataclass

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2
from services.common.identity import REVIEWER_ROLE
from services.console.upstream import PersonCalls


class NotAPerson(Exception):
    """The token belongs to a service or the system, not to a person."""


@dataclass(frozen=True)
class Person:
    id: str
    roles: tuple[str, ...]

    @property
    def is_reviewer(self) -> bool:
        return REVIEWER_ROLE in self.roles


async def identify(calls: PersonCalls) -> Person:
    """The person the token belongs to; raises Refused (e.g. UNAUTHENTICATED for a revoked token) or NotAPerson."""
    info = await calls.call("lineage", "GetServiceInfo", lineage_pb2.GetServiceInfoRequest())
    if info.caller.kind != common_pb2.PRINCIPAL_KIND_HUMAN:
        raise NotAPerson(info.caller.id)
    return Person(info.caller.id, tuple(sorted(info.caller.roles)))
