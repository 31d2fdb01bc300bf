"""Request validation and defaults, and the response_json_schema checks.

`prepare` resolves every default (operation, category, provider, model, temperature, max_tokens) and checks
every field before anything is written or sent: InvalidArgument lists all problems at once. `prepare_image`
does the same for GenerateImage (operation, category, provider, model, size, count).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from services.ai_gateway.domain.config import IMAGE_SIZES, GatewayConfig, ImageModel, ImageOperation, Operation
from services.ai_gateway.domain.model import ImageRequest, PreparedImage, PreparedRequest, TextRequest
from services.ai_gateway.policy import SafetyPolicy
from services.ai_gateway.transport.base import Provider
from services.common import idempotency
from services.common.catalog import callers_of
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from services.common.identity import Principal, PrincipalKind
from services.common.json_limits import loads_json
from services.common.limits import MAX_IMAGES_PER_CALL

KNOWN_PROVIDERS = ("local", "openai")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@\-]{0,127}$")
MAX_VARIANT_SEED = 128
# The services that may name the person they call for: the gateway's callers in the call graph.
ON_BEHALF_OF_NAMERS = frozenset(f"service:{name}" for name in callers_of("ai_gateway"))
PERSON_ID = re.compile(r"human:[A-Za-z0-9._@-]{1,128}")
_FENCED_JSON = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.S)


class Validator:
    def __init__(self, config: GatewayConfig, policy: SafetyPolicy, providers: Mapping[str, Provider]) -> None:
        self._config = config
        self._policy = policy
        self._providers = providers
        self._default_provider = self._resolve_auto(config.default_provider)

    def _resolve_auto(self, choice: str) -> str:
        if choice != "auto":
            return choice
        return "openai" if "openai" in self._providers else "local"

    def operation_defaults(self, name: str) -> tuple[Operation, str, str]:
        """(operation, provider, model) an operation uses when the request leaves them empty."""
        operation = self._config.operations[name]
        provider = self._resolve_auto(operation.provider if operation.provider != "auto" else self._default_provider)
        explicit = operation.provider != "auto" and operation.model
        model = operation.model if explicit else self._default_model(provider)
        return operation, provider, model

    def _default_model(self, provider: str) -> str:
        found = self._providers.get(provider)
        if found is not None:
            return found.default_model
        return self._config.openai_model if provider == "openai" else self._config.local_model

    def image_operation_defaults(self, name: str) -> tuple[ImageOperation, str, str, ImageModel | None]:
        """(image operation, provider, model, what that model can make) when the request leaves them empty."""
        operation = self._config.image_operations[name]
        provider = self._resolve_auto(operation.provider if operation.provider != "auto" else self._default_provider)
        model = operation.model if operation.provider != "auto" and operation.model else self._image_model(provider)
        return operation, provider, model, self._config.image_models.get(provider, {}).get(model)

    def _image_model(self, provider: str) -> str:
        return self._config.openai_image_model if provider == "openai" else self._config.local_image_model

    def prepare_image(self, request: ImageRequest) -> PreparedImage:
        """Resolves defaults and checks every field; InvalidArgument lists all problems at once."""
        idempotency.validate_request_id(request.request_id)
        problems: list[FieldViolation] = []

        def bad(field_name: str, description: str) -> None:
            problems.append(FieldViolation(field_name, description))

        operation = self._config.image_operations.get(request.operation)
        if operation is None:
            known = ", ".join(sorted(self._config.image_operations))
            bad("operation", f"unknown image operation {request.operation[:64]!r}; known: {known}")
            raise invalid(problems)
        _, default_provider, default_model, _ = self.image_operation_defaults(request.operation)
        category = self._category(request.operation, request.category, operation.categories, bad)
        provider = self._resolve_auto(request.provider) if request.provider else default_provider
        if provider not in KNOWN_PROVIDERS:
            bad("provider", f"unknown provider {request.provider[:64]!r}; known: {', '.join(KNOWN_PROVIDERS)}")
        model_name = request.model or (default_model if provider == default_provider else self._image_model(provider))
        model = self._config.image_models.get(provider, {}).get(model_name)
        if model is None and provider in KNOWN_PROVIDERS:
            known = ", ".join(sorted(self._config.image_models.get(provider, {}))) or "none"
            bad("model", f"{model_name[:64]!r} is not an image model of {provider}; known: {known}")
        if not request.prompt.strip():
            bad("prompt", "must not be empty")
        sizes = model.sizes if model is not None else IMAGE_SIZES
        size = request.size or (operation.size if operation.size in sizes else sizes[0])
        if size not in IMAGE_SIZES:
            bad("size", f"{size[:32]!r} is not one of {', '.join(IMAGE_SIZES)}")
        elif size not in sizes:
            bad("size", f"{model_name} makes {', '.join(sizes)}")
        limit = min(MAX_IMAGES_PER_CALL, model.max_count if model is not None else MAX_IMAGES_PER_CALL)
        count = request.count or 1
        if not 1 <= count <= limit:
            bad("count", f"must be between 1 and {limit} (0 for 1)")
        if len(request.variant_seed) > MAX_VARIANT_SEED:
            bad("seed", f"at most {MAX_VARIANT_SEED} characters")
        if problems:
            raise invalid(problems)
        self._require_configured(provider)
        return PreparedImage(request, request.operation, category, provider, model_name, size, count)

    def _category(
        self, operation: str, requested: str, allowed: tuple[str, ...], bad: Callable[[str, str], None]
    ) -> str:
        category = requested or allowed[0]
        if not self._policy.has_category(category):
            bad("category", f"unknown safety category {category[:64]!r}")
        elif category not in allowed:
            bad("category", f"{operation} allows categories {', '.join(allowed)}")
        return category

    def _require_configured(self, provider: str) -> None:
        if provider not in self._providers:
            raise FailedPrecondition(
                "PROVIDER_NOT_CONFIGURED",
                f"provider {provider!r} is not configured on this gateway (no key); use another provider",
                metadata={"provider": provider},
            )

    def prepare(self, request: TextRequest) -> PreparedRequest:
        """Resolves defaults and checks every field; InvalidArgument lists all problems at once."""
        idempotency.validate_request_id(request.request_id)
        problems: list[FieldViolation] = []

        def bad(field_name: str, description: str) -> None:
            problems.append(FieldViolation(field_name, description))

        config = self._config
        operation = config.operations.get(request.operation)
        if operation is None:
            known = ", ".join(sorted(config.operations))
            bad("operation", f"unknown operation {request.operation[:64]!r}; known: {known}")
            raise invalid(problems)
        _, default_provider, default_model = self.operation_defaults(request.operation)
        category = self._category(request.operation, request.category, operation.categories, bad)
        provider = self._resolve_auto(request.provider) if request.provider else default_provider
        if provider not in KNOWN_PROVIDERS:
            bad("provider", f"unknown provider {request.provider[:64]!r}; known: {', '.join(KNOWN_PROVIDERS)}")
        model = request.model or (default_model if provider == default_provider else self._default_model(provider))
        if not MODEL_NAME.match(model):
            bad("model", "a model name is 1-128 letters, digits and ._:/@- characters")
        if not request.prompt.strip():
            bad("prompt", "must not be empty")
        temperature = operation.temperature if request.temperature is None else request.temperature
        if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
            bad("temperature", "must be between 0.0 and 2.0")
        max_tokens = request.max_tokens or min(operation.max_tokens, config.max_tokens_limit)
        if not 1 <= max_tokens <= config.max_tokens_limit:
            bad("max_tokens", f"must be between 1 and {config.max_tokens_limit} (0 for the default)")
        if len(request.variant_seed) > MAX_VARIANT_SEED:
            bad("variant_seed", f"at most {MAX_VARIANT_SEED} characters")
        schema = self._schema(request.response_json_schema, bad)
        if problems:
            raise invalid(problems)
        self._require_configured(provider)
        fallbacks = tuple(p for p in operation.fallback_providers if p != provider and p in self._providers)
        return PreparedRequest(
            request, request.operation, category, provider, model, temperature, max_tokens, schema, fallbacks
        )

    def _schema(self, text: str, bad: Callable[[str, str], None]) -> dict[str, Any] | None:
        if not text:
            return None
        if len(text.encode("utf-8")) > self._config.max_schema_bytes:
            bad("response_json_schema", f"at most {self._config.max_schema_bytes} bytes")
            return None
        try:
            schema = loads_json(text, "response_json_schema")
        except json.JSONDecodeError as exc:
            bad("response_json_schema", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
            return None
        if not isinstance(schema, dict):
            bad("response_json_schema", "must be a JSON object (a JSON Schema)")
            return None
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            bad("response_json_schema", f"not a valid JSON Schema (draft 2020-12) at {where}: {exc.message[:200]}")
            return None
        return schema


def validate_on_behalf_of(on_behalf_of: Principal | None, caller: Principal) -> None:
    """A request's on_behalf_of (lineage's requested_by rule, for people only): only a service of the call graph
    may name the person it calls for, and only a well-formed human principal. Nothing is written on refusal."""
    if on_behalf_of is None:
        return
    if caller.kind is not PrincipalKind.SERVICE or caller.id not in ON_BEHALF_OF_NAMERS:
        raise PermissionDenied(
            "ON_BEHALF_OF_NOT_ALLOWED",
            f"{caller.id} may not name someone to call for; only {', '.join(sorted(ON_BEHALF_OF_NAMERS))} call the "
            "gateway on behalf of their caller (a person calls as themselves: leave on_behalf_of unset)",
            metadata={"principal": caller.id},
        )
    if on_behalf_of.kind is not PrincipalKind.HUMAN or not PERSON_ID.fullmatch(on_behalf_of.id):
        raise InvalidArgument(
            "ON_BEHALF_OF_INVALID",
            f"on_behalf_of must be a human principal named 'human:<name>' (got {on_behalf_of.id[:100]!r} of kind "
            f"{on_behalf_of.kind.value})",
            violations=[FieldViolation("on_behalf_of", "a human principal id 'human:<name>' of kind HUMAN")],
        )


def invalid(problems: list[FieldViolation]) -> InvalidArgument:
    return InvalidArgument(
        "REQUEST_INVALID", "; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems
    )


def unfence(content: str) -> str:
    """The JSON inside a ```json fence, which models often add; the text itself otherwise."""
    match = _FENCED_JSON.match(content)
    return match.group(1) if match else content


def schema_problem(schema: dict[str, Any], content: str) -> str | None:
    """Why `content` is not a JSON document satisfying `schema` (path and failed keyword, never the values it
    holds), or None when it is."""
    try:
        document = json.loads(unfence(content))
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return f"not JSON ({type(exc).__name__})"
    try:
        error = best_match(Draft202012Validator(schema).iter_errors(document))
    except Exception:
        return "the schema could not be applied (an unresolvable $ref?)"
    if error is None:
        return None
    return f"at {error.json_path}: fails {error.validator!r}"


def schema_failed(problem: str, *, repaired: bool) -> FailedPrecondition:
    after = " after one repair attempt" if repaired else " (streams are not repaired)"
    return FailedPrecondition(
        "SCHEMA_VALIDATION_FAILED",
        f"the response does not satisfy response_json_schema{after}: {problem}",
        metadata={"error": problem[:200]},
    )
