"""Every ErrorInfo reason a service can raise is documented in its .proto comments.

Reasons are found statically: the source is parsed (never imported) and every call of a CustodyError subclass,
or of a helper that forwards its `reason` parameter to one, with a string literal as the reason is collected.
Reasons raised in the shared packages (services/common, services/rosette) belong to the top-level function or class
that raises them; a service can raise them when its package names that function or class, directly or through
other shared code that does (every service names the server, which names the interceptor, so the authentication
reasons reach every service). Each reason a service can raise must appear in a comment of
protos/custody/<service>/v1/*.proto: in the RPC that raises it, or in the service-level comment for reasons any
RPC can raise.
"""

from __future__ import annotations

import ast
import functools
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ai_gateway", "art_studio", "lineage", "runs")
SHARED = ("services/common", "services/rosette")
REASON = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")

# The least each walk must find, so that a walk broken by a refactoring (a renamed helper, a moved package)
# cannot pass by finding nothing. Raise these as services gain reasons; they are not targets.
AT_LEAST_OWN = {"ai_gateway": 10, "art_studio": 4, "lineage": 25, "runs": 20}
AT_LEAST_SHARED = 6  # the interceptor's authentication, request-id and malformed-request reasons


@dataclass
class Walk:
    """What one walk of a source tree found: reasons by where they are raised."""

    own: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # service -> reason -> call sites
    shared: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # shared owner -> reason -> call sites


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _names(node: ast.AST) -> set[str]:
    """Every name a piece of code mentions: variables, attributes and imported names."""
    found: set[str] = set()
    for each in ast.walk(node):
        if isinstance(each, ast.Name):
            found.add(each.id)
        elif isinstance(each, ast.Attribute):
            found.add(each.attr)
        elif isinstance(each, ast.ImportFrom):
            found.update(alias.name for alias in each.names)
    return found


def _parse(root: Path, packages: Iterable[str]) -> list[tuple[str, ast.Module]]:
    modules = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.relative_to(root).parts:
                modules.append((str(path.relative_to(root)), ast.parse(path.read_text(), str(path))))
    return modules


def _error_classes(modules: list[tuple[str, ast.Module]]) -> set[str]:
    """CustodyError and every class derived from it (by name, to a fixed point) in the parsed source."""
    classes = {"CustodyError"}
    while True:
        more = {
            node.name
            for _, module in modules
            for node in ast.walk(module)
            if isinstance(node, ast.ClassDef)
            and node.name not in classes
            and any((getattr(base, "id", None) or getattr(base, "attr", None)) in classes for base in node.bases)
        }
        if not more:
            return classes
        classes |= more


def _forwarding_helpers(modules: list[tuple[str, ast.Module]], errors: set[str]) -> dict[str, int]:
    """Functions with a `reason` parameter they pass on as an error's reason: name -> its positional index."""
    helpers: dict[str, int] = {}
    for _, module in modules:
        for node in ast.walk(module):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            forwards = any(
                isinstance(call, ast.Call)
                and _callee(call) in errors
                and call.args
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id == "reason"
                for call in ast.walk(node)
            )
            if "reason" in params and forwards:
                helpers[node.name] = params.index("reason")
    return helpers


def _raised(tree: ast.AST, path: str, errors: set[str], helpers: dict[str, int]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = _callee(call)
        position = 0 if name in errors else helpers.get(name or "")
        if position is None:
            continue
        reason: ast.expr | None = call.args[position] if len(call.args) > position else None
        reason = next((k.value for k in call.keywords if k.arg == "reason"), reason)
        if isinstance(reason, ast.Constant) and isinstance(reason.value, str):
            found.setdefault(reason.value, []).append(f"{path}:{call.lineno}")
    return found


def walk(root: Path, services: Iterable[str] = SERVICES) -> tuple[Walk, dict[str, dict[str, list[str]]]]:
    """(the walk, reason -> call sites each service can raise, its own and the shared ones it reaches)."""
    shared_modules = _parse(root, SHARED)
    service_modules = {service: _parse(root, [f"services/{service}"]) for service in services}
    every = shared_modules + [m for modules in service_modules.values() for m in modules]
    errors = _error_classes(every)
    helpers = _forwarding_helpers(every, errors)

    result = Walk()
    mentions: dict[str, set[str]] = {}  # shared owner -> names its body mentions
    for path, module in shared_modules:
        for node in module.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                mentions.setdefault(node.name, set()).update(_names(node))
                for reason, sites in _raised(node, path, errors, helpers).items():
                    result.shared.setdefault(node.name, {}).setdefault(reason, []).extend(sites)

    def reached(names: set[str]) -> set[str]:
        """Shared owners named here, and those they name in turn."""
        owners = {name for name in names if name in mentions}
        while more := {n for owner in owners for n in mentions[owner] if n in mentions} - owners:
            owners |= more
        return owners

    can_raise: dict[str, dict[str, list[str]]] = {}
    for service, modules in service_modules.items():
        own: dict[str, list[str]] = {}
        names: set[str] = set()
        for path, module in modules:
            for reason, sites in _raised(module, path, errors, helpers).items():
                own.setdefault(reason, []).extend(sites)
            names |= _names(module)
        result.own[service] = own
        raisable = {reason: list(sites) for reason, sites in own.items()}
        for owner in reached(names):
            for reason, sites in result.shared.get(owner, {}).items():
                raisable.setdefault(reason, []).extend(sites)
        can_raise[service] = raisable
    return result, can_raise


def documented(root: Path, service: str) -> set[str]:
    """Every UPPER_SNAKE word in a comment of the service's .proto files."""
    words: set[str] = set()
    for proto in sorted((root / "protos" / "custody" / service / "v1").glob("*.proto")):
        for line in proto.read_text().splitlines():
            if "//" in line:
                words.update(REASON.findall(line.split("//", 1)[1]))
    return words


def undocumented(root: Path, services: Iterable[str] = SERVICES) -> dict[str, dict[str, list[str]]]:
    _, can_raise = walk(root, services)
    return {
        service: missing
        for service, raisable in can_raise.items()
        if (missing := {r: s for r, s in raisable.items() if r not in documented(root, service)})
    }


# ---- the repository ----------------------------------------------------------------------------------------------


@functools.cache
def repository() -> tuple[Walk, dict[str, dict[str, list[str]]]]:
    return walk(ROOT)


def test_every_reason_a_service_can_raise_is_in_its_proto() -> None:
    assert undocumented(ROOT) == {}


@pytest.mark.parametrize("service", SERVICES)
def test_the_walk_finds_a_plausible_number_of_each_services_reasons(service: str) -> None:
    found, can_raise = repository()
    assert len(found.own[service]) >= AT_LEAST_OWN[service]
    assert len(set(can_raise[service]) - set(found.own[service])) >= AT_LEAST_SHARED


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_reaches_the_interceptors_reasons(service: str) -> None:
    _, can_raise = repository()
    assert {"TOKEN_MISSING", "TOKEN_INVALID", "PRINCIPAL_NOT_ALLOWED", "REQUEST_MALFORMED"} <= set(can_raise[service])


def test_every_reason_is_upper_snake() -> None:
    found, _ = repository()
    reasons = {r for own in [*found.own.values(), *found.shared.values()] for r in own}
    assert {r for r in reasons if not REASON.fullmatch(r)} == set()


# ---- the guard itself, on planted source trees ------------------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Path:
    (root / "services" / "common").mkdir(parents=True)
    (root / "services" / "common" / "errors.py").write_text(
        "class CustodyError(Exception): ...\nclass InvalidArgument(CustodyError): ...\n"
    )
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    return root


PROTO = "protos/custody/svc/v1/svc.proto"


def test_an_undocumented_reason_is_reported_with_where_it_is_raised(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "services/svc/domain.py": """
                from services.common.errors import InvalidArgument

                def check(value):
                    if value:
                        raise InvalidArgument("DOCUMENTED_REASON", "documented")
                    raise InvalidArgument("PLANTED_REASON", "not in the proto")
            """,
            PROTO: "service Svc {\n  // Errors: INVALID_ARGUMENT (DOCUMENTED_REASON).\n"
            "  rpc Check(A) returns (B);\n}\n",
        },
    )
    assert undocumented(root, ["svc"]) == {"svc": {"PLANTED_REASON": ["services/svc/domain.py:7"]}}


def test_a_reason_only_in_a_proto_string_is_not_documentation(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "services/svc/domain.py": "from services.common.errors import InvalidArgument\n"
            'InvalidArgument("X_Y", "m")\n',
            PROTO: 'option x = "X_Y";\nservice Svc {\n  rpc Check(A) returns (B);  // Errors: X_Z\n}\n',
        },
    )
    assert set(undocumented(root, ["svc"])["svc"]) == {"X_Y"}


def test_reasons_through_helpers_and_error_subclasses_are_found(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "services/svc/domain.py": """
                from services.common.errors import CustodyError, InvalidArgument

                class Refused(InvalidArgument): ...

                def _invalid(field, reason):
                    return InvalidArgument(reason, f"bad {field}")

                def check():
                    raise _invalid("name", "VIA_HELPER")

                def other():
                    raise Refused(reason="VIA_SUBCLASS", message="m")

                def not_an_error(reason):
                    return reason

                not_an_error("NOT_A_REASON")
            """,
            PROTO: "// nothing documented\n",
        },
    )
    assert set(undocumented(root, ["svc"])["svc"]) == {"VIA_HELPER", "VIA_SUBCLASS"}


def test_a_shared_reason_belongs_to_the_services_that_reach_its_raiser(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "services/common/pages.py": """
                from services.common.errors import InvalidArgument

                def decode(token):
                    raise InvalidArgument("SHARED_TOKEN_INVALID", "bad token")

                class Pager:
                    def page(self, token):
                        return decode(token)
            """,
            "services/lister/servicer.py": "from services.common.pages import Pager\nPager().page('')\n",
            "services/other/servicer.py": "print('lists nothing')\n",
            "protos/custody/lister/v1/lister.proto": "// nothing documented\n",
            "protos/custody/other/v1/other.proto": "// nothing documented\n",
        },
    )
    assert undocumented(root, ["lister", "other"]) == {
        "lister": {"SHARED_TOKEN_INVALID": ["services/common/pages.py:5"]}
    }
