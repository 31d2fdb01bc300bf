"""Domain types of the gateway: requests, the provenance envelope and the audited call record (no grpc here).

A CallRecord serialises to canonical JSON; the store keeps that document (plus indexed columns) so the audit
row is exactly what was decided, and its digest detects any change made behind the database's back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.ai_gateway.pricing import Cost
from services.ai_gateway.transport.base import Usage
from services.common.identity import Principal, PrincipalKind
from services.common.ledger.leaves import LedgerPosition

# The grammar of call names (CALL_ID_PREFIX, CALL_ID, CALL_NAME) is shared: services/common/resource_names.py.
CALL_NAME_PREFIX = "calls/"


@dataclass(frozen=True)
class TextRequest:
    """A GenerateText/StreamText request as the caller sent it (empty/None = use the default)."""

    operation: str
    category: str = ""
    provider: str = ""
    model: str = ""
    prompt: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int = 0
    variant_seed: str = ""
    response_json_schema: str = ""
    request_id: str = ""
    # The person a service calls for (its own authenticated caller); None when the caller calls for itself.
    on_behalf_of: Principal | None = None

    def fingerprint_fields(self) -> dict[str, Any]:
        """What defines the request for idempotency: every field but the key itself (spelled out because
        dataclasses.asdict deep-copies each value, a cost every call paid)."""
        fields = {
            "operation": self.operation,
            "category": self.category,
            "provider": self.provider,
            "model": self.model,
            "prompt": self.prompt,
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "variant_seed": self.variant_seed,
            "response_json_schema": self.response_json_schema,
        }
        return _with_person(self.on_behalf_of, fields)


@dataclass(frozen=True)
class ImageRequest:
    """A GenerateImage request as the caller sent it (empty/0 = use the default); `variant_seed` is its seed."""

    operation: str
    category: str = ""
    provider: str = ""
    model: str = ""
    prompt: str = ""
    size: str = ""
    count: int = 0
    variant_seed: str = ""
    request_id: str = ""
    on_behalf_of: Principal | None = None

    @property
    def system_prompt(self) -> str:
        """Image requests have none (the audit and the input check read it from every request)."""
        return ""

    def fingerprint_fields(self) -> dict[str, Any]:
        """What defines the request for idempotency; the rpc keeps a text request from matching it."""
        fields = {
            "rpc": "GenerateImage",
            "operation": self.operation,
            "category": self.category,
            "provider": self.provider,
            "model": self.model,
            "prompt": self.prompt,
            "size": self.size,
            "count": self.count,
            "variant_seed": self.variant_seed,
        }
        return _with_person(self.on_behalf_of, fields)


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    BLOCKED = "BLOCKED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Envelope:
    """The seed's AICallEnvelope plus caller, trace id, attempts, versions and the replayed flag."""

    call: str
    request_id: str
    operation: str
    category: str
    created_at: datetime
    provider: str
    model: str
    allowed: bool
    safety_reason: str
    prompt_sha256: str
    system_prompt_sha256: str
    response_sha256: str
    latency_ms: float
    usage: Usage | None
    cost_estimate_usd: float | None
    variant_seed: str
    engine_version: str
    caller: Principal
    trace_id: str
    attempts: int
    price_table_version: str
    policy_version: str
    replayed: bool = False
    # GenerateImage only: the digest of each image by index, and of the provider's revised prompt.
    image_sha256: tuple[str, ...] = ()
    revised_prompt_sha256: str = ""
    # The person the caller (a service of the call graph) called for; None when it called for itself.
    on_behalf_of: Principal | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored document; on_behalf_of only when set, so records written before it existed keep the
        canonical JSON (and digest) they were stored with."""
        document = {
            "call": self.call,
            "request_id": self.request_id,
            "operation": self.operation,
            "category": self.category,
            "created_at": self.created_at.isoformat(timespec="microseconds"),
            "provider": self.provider,
            "model": self.model,
            "allowed": self.allowed,
            "safety_reason": self.safety_reason,
            "prompt_sha256": self.prompt_sha256,
            "system_prompt_sha256": self.system_prompt_sha256,
            "response_sha256": self.response_sha256,
            "latency_ms": self.latency_ms,
            "usage": _usage_dict(self.usage),
            "cost_estimate_usd": self.cost_estimate_usd,
            "variant_seed": self.variant_seed,
            "engine_version": self.engine_version,
            "caller": {"id": self.caller.id, "kind": self.caller.kind.value, "roles": sorted(self.caller.roles)},
            "trace_id": self.trace_id,
            "attempts": self.attempts,
            "price_table_version": self.price_table_version,
            "policy_version": self.policy_version,
            "replayed": self.replayed,
            "image_sha256": list(self.image_sha256),
            "revised_prompt_sha256": self.revised_prompt_sha256,
        }
        if self.on_behalf_of is not None:
            document["on_behalf_of"] = _person_dict(self.on_behalf_of)
        return document

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Envelope:
        """Records stored before GenerateImage existed lack the image keys, and those stored before on_behalf_of
        existed lack it: they read as empty and None."""
        caller = data["caller"]
        person = data.get("on_behalf_of")
        return Envelope(
            **{
                **data,
                "image_sha256": tuple(data.get("image_sha256", ())),
                "created_at": datetime.fromisoformat(data["created_at"]),
                "usage": _usage_from(data["usage"]),
                "caller": Principal(caller["id"], PrincipalKind(caller["kind"]), frozenset(caller["roles"])),
                "on_behalf_of": None if person is None else Principal(person["id"], PrincipalKind(person["kind"])),
            }
        )


@dataclass(frozen=True)
class CallRecord:
    """One audited call: the envelope, its cost, how it ended, and (verbose audit only) the redacted texts."""

    envelope: Envelope
    cost: Cost
    outcome: Outcome
    rpc: str
    request_sha256: str
    idempotency_key: str = ""
    error_reason: str = ""
    rule_id: str = ""
    finish_reason: str = ""
    verbose: bool = False
    prompt_redacted: str = ""
    response_redacted: str = ""

    @property
    def call_id(self) -> str:
        return self.envelope.call.removeprefix(CALL_NAME_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return {
            "envelope": self.envelope.to_dict(),
            "cost": {
                "estimate_usd": self.cost.estimate_usd,
                "price_table_version": self.cost.price_table_version,
                "provider": self.cost.provider,
                "model": self.cost.model,
                "usage": _usage_dict(self.cost.usage),
                "unpriced_reason": self.cost.unpriced_reason,
            },
            "outcome": self.outcome.value,
            "rpc": self.rpc,
            "request_sha256": self.request_sha256,
            "idempotency_key": self.idempotency_key,
            "error_reason": self.error_reason,
            "rule_id": self.rule_id,
            "finish_reason": self.finish_reason,
            "verbose": self.verbose,
            "prompt_redacted": self.prompt_redacted,
            "response_redacted": self.response_redacted,
        }

    def log_view(self) -> dict[str, Any]:
        """What the audit log line carries: metadata only, never text, even with verbose audit on."""
        view = self.to_dict()
        del view["prompt_redacted"], view["response_redacted"]
        return view

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CallRecord:
        cost = data["cost"]
        return CallRecord(
            **{
                **data,
                "envelope": Envelope.from_dict(data["envelope"]),
                "cost": Cost(**{**cost, "usage": _usage_from(cost["usage"])}),
                "outcome": Outcome(data["outcome"]),
            }
        )

    def replayed(self) -> CallRecord:
        return replace(self, envelope=replace(self.envelope, replayed=True))


@dataclass(frozen=True)
class AuditedCall:
    """A stored call record and where its leaf sits in the gateway's ledger (None when the ledger is off)."""

    record: CallRecord
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class CallResult:
    """What GenerateText returns (and a stream ends with): a replayed result carries the original call's leaf."""

    content: str
    record: CallRecord
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class TextChunk:
    """A piece of a streamed answer, released only after the safety checks saw it."""

    text: str
    index: int


StreamItem = TextChunk | CallResult


@dataclass(frozen=True)
class GeneratedImage:
    """One image a call made: its PNG bytes and what its descriptor says about them."""

    index: int
    data: bytes
    sha256: str
    width: int
    height: int
    media_type: str = "image/png"


@dataclass(frozen=True)
class ImageResult:
    """What GenerateImage returns: the images (bytes in memory; the audit keeps only digests), the provider's
    revised prompt ("" when none), and the record; a replayed result carries the original call's leaf."""

    images: tuple[GeneratedImage, ...]
    revised_prompt: str
    record: CallRecord
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class ListFilters:
    request_id: str = ""
    operation: str = ""
    caller: str = ""
    start_us: int | None = None
    end_us: int | None = None
    outcome: Outcome | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Outcome) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CallPage:
    calls: list[AuditedCall]
    next_page_token: str = ""


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request with every default resolved."""

    raw: TextRequest
    operation: str
    category: str
    provider: str
    model: str
    temperature: float
    max_tokens: int
    response_schema: dict[str, Any] | None
    fallbacks: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PreparedImage:
    """A validated image request with every default resolved (image operations have no fallbacks)."""

    raw: ImageRequest
    operation: str
    category: str
    provider: str
    model: str
    size: str
    count: int
    fallbacks: tuple[str, ...] = ()

    @property
    def width_height(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


def _person_dict(person: Principal) -> dict[str, str]:
    """A named person: id and kind (roles are not the naming service's to say)."""
    return {"id": person.id, "kind": person.kind.value}


def _with_person(person: Principal | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A request's fingerprint fields plus on_behalf_of when set: a request without it keeps the fingerprint it
    had before the field existed (so a stored request_id still replays), and one person's request never replays
    as another's."""
    if person is not None:
        fields["on_behalf_of"] = _person_dict(person)
    return fields


def _usage_dict(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _usage_from(data: dict[str, int] | None) -> Usage | None:
    if data is None:
        return None
    return Usage(data["input_tokens"], data["cached_input_tokens"], data["output_tokens"])
