"""AST guards for the authority boundaries the README describes (the call graph and who may hold what).

The boundaries are process boundaries: only ai_gateway's transport layer may hold vendor SDKs and provider keys,
and a service reaches another service over gRPC, never by importing its package. These checks read the source
rather than trusting conventions, so a violation fails the build. Each returns a list of `Violation`s; a file that
cannot be parsed is itself a violation, so nothing escapes the checks by being unreadable.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.catalog import SERVICE_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]

# The only place vendor SDKs and provider keys may appear.
TRANSPORT_DIR = ("services", "ai_gateway", "transport")

# The operator CLI is a gRPC client of every service. From a service package it may import only what it runs in
# process: the entry point `custody serve` builds (`main`), its settings (`config`), its schema migrations
# (`custody migrate`) and its offline ledger audit (`custody ledger audit`).
CLI_DIR = ("services", "cli")
# X.509 and gRPC's TLS credential constructors: services/common/tls/ only (one place issues certificates, one reads
# identities from them, one builds credentials).
TLS_DIR = ("services", "common", "tls")
X509_MODULE = "cryptography.x509"
TLS_CREDENTIAL_CONSTRUCTORS = frozenset(
    {
        "ssl_channel_credentials",
        "ssl_server_credentials",
        "dynamic_ssl_server_credentials",
        "ssl_server_certificate_configuration",
    }
)
CLI_ALLOWED = re.compile(
    rf"^services\.({'|'.join(map(re.escape, SERVICE_NAMES))})\.(main|config|migrations|ledger_audit)(\.|$)"
)

VENDOR_SDK_MODULES: tuple[str, ...] = (
    "openai",
    "anthropic",
    "google.generativeai",
    "google.genai",
    "cohere",
    "mistralai",
    "groq",
    "together",
    "replicate",
    "litellm",
)

PROVIDER_KEY_NAME = re.compile(
    r"^[A-Z0-9_]*(OPENAI|ANTHROPIC|GEMINI|GOOGLE|COHERE|MISTRAL|GROQ|TOGETHER|REPLICATE)[A-Z0-9_]*(API_KEY|_KEY|_TOKEN)$"
)

# Functions that import a module named by a string: importlib.import_module and the builtin __import__.
_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class Violation:
    """One finding: the file (relative to the root, POSIX), its line, and the boundary it crosses."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class _Import:
    """One module an import statement or dynamic import call may load, with where it happens."""

    module: str
    line: int
    relative: bool
    # The module of a `from X import a, b`: X itself is not loaded by name, each X.a and X.b is checked on its own.
    from_base: bool = False


@dataclass(frozen=True)
class _Source:
    rel: tuple[str, ...]
    tree: ast.Module

    @property
    def path(self) -> str:
        return "/".join(self.rel)

    def under(self, prefix: tuple[str, ...]) -> bool:
        return self.rel[: len(prefix)] == prefix


def python_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every `*.py` under `services/`, minus caches; fails loudly if there is no `services/` to scan."""
    services = root / "services"
    if not services.is_dir():
        raise FileNotFoundError(f"no services/ directory under {root}; the guards would pass vacuously")
    return sorted(p for p in services.rglob("*.py") if "__pycache__" not in p.relative_to(root).parts)


def vendor_sdk_imports(root: Path = REPO_ROOT) -> list[Violation]:
    """Vendor AI SDKs are imported only under services/ai_gateway/transport/, so no other code can call a model."""
    sources, violations = _parse_all(root)
    for source in sources:
        if source.under(TRANSPORT_DIR):
            continue
        for imp in _imports(source):
            vendor = None if imp.relative else _vendor_of(imp.module)
            if vendor is not None:
                violations.append(
                    Violation(
                        source.path,
                        imp.line,
                        f"imports vendor SDK {vendor!r}; only {'/'.join(TRANSPORT_DIR)}/ may",
                    )
                )
    return _report(violations)


def provider_key_names(root: Path = REPO_ROOT) -> list[Violation]:
    """Provider key variable names appear only under services/ai_gateway/transport/, so no other code reads a key."""
    sources, violations = _parse_all(root)
    for source in sources:
        if source.under(TRANSPORT_DIR):
            continue
        for node in ast.walk(source.tree):
            # f-string literal parts are Constant nodes inside JoinedStr, so this walk covers them too.
            if not isinstance(node, ast.Constant):
                continue
            value = node.value
            if isinstance(value, bytes):
                value = value.decode("ascii", errors="replace")
            if isinstance(value, str) and PROVIDER_KEY_NAME.match(value):
                violations.append(
                    Violation(
                        source.path,
                        node.lineno,
                        f"names provider key {value!r}; only {'/'.join(TRANSPORT_DIR)}/ may",
                    )
                )
    return _report(violations)


def tls_outside_its_package(root: Path = REPO_ROOT) -> list[Violation]:
    """X.509 (cryptography.x509) and gRPC's TLS credential constructors appear only under services/common/tls/, so
    certificates are issued, identities read and credentials built in one place each."""
    sources, violations = _parse_all(root)
    where = "/".join(TLS_DIR)
    for source in sources:
        if source.under(TLS_DIR):
            continue
        for imp in _imports(source):
            if imp.relative:
                continue
            if imp.module == X509_MODULE or imp.module.startswith(X509_MODULE + "."):
                violations.append(Violation(source.path, imp.line, f"imports {imp.module}; only {where}/ may"))
            if imp.module.removeprefix("grpc.") in TLS_CREDENTIAL_CONSTRUCTORS:
                violations.append(Violation(source.path, imp.line, f"imports {imp.module}; only {where}/ may"))
        for node in ast.walk(source.tree):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in TLS_CREDENTIAL_CONSTRUCTORS:
                violations.append(Violation(source.path, node.lineno, f"uses grpc.{name}; only {where}/ may"))
    return _report(violations)


def cross_service_imports(root: Path = REPO_ROOT) -> list[Violation]:
    """A service imports services.common and the contracts, never another service: they talk over gRPC only.

    Files under services/<service>/ may import their own package; services/common/ (and any other non-service
    directory) may import no service package; services/cli/ may import each service's main, config and migrations
    only. Relative imports are resolved first.
    """
    sources, violations = _parse_all(root)
    for source in sources:
        if source.under(CLI_DIR):
            violations += _cli_violations(source)
            continue
        own = source.rel[1] if len(source.rel) > 2 and source.rel[1] in SERVICE_NAMES else None
        for imp in _imports(source):
            if imp.module.startswith("."):
                violations.append(Violation(source.path, imp.line, "relative import climbs past the top-level package"))
                continue
            target = _service_of(imp.module)
            if target is None or target == own:
                continue
            where = f"service {own!r}" if own else f"{'/'.join(source.rel[:-1])}/"
            violations.append(
                Violation(
                    source.path,
                    imp.line,
                    f"{where} imports the package of service {target!r}; call it over gRPC instead",
                )
            )
    return _report(violations)


def _cli_violations(source: _Source) -> list[Violation]:
    violations = []
    for imp in _imports(source):
        if imp.module.startswith("."):
            violations.append(Violation(source.path, imp.line, "relative import climbs past the top-level package"))
            continue
        target = _service_of(imp.module)
        if target is None or _cli_may_import(imp):
            continue
        violations.append(
            Violation(
                source.path,
                imp.line,
                f"the CLI imports an internal of service {target!r}; it may import only a service's main, config and "
                "migrations: call the service over gRPC instead",
            )
        )
    return violations


def _cli_may_import(imp: _Import) -> bool:
    if CLI_ALLOWED.match(imp.module):
        return True
    # `from services.runs import main`: the bare package; each imported name is checked itself.
    return imp.from_base and imp.module.count(".") == 1


def _parse_all(root: Path) -> tuple[list[_Source], list[Violation]]:
    sources: list[_Source] = []
    violations: list[Violation] = []
    for path in python_files(root):
        rel = path.relative_to(root).parts
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError) as exc:  # ValueError covers bad encodings and null bytes.
            line = (exc.lineno or 0) if isinstance(exc, SyntaxError) else 0
            violations.append(Violation("/".join(rel), line, f"cannot parse, so the guards cannot check it: {exc}"))
            continue
        sources.append(_Source(rel, tree))
    return sources, violations


def _imports(source: _Source) -> Iterator[_Import]:
    """Every module a file may load: import statements (each `from` name too) and string-constant dynamic imports.

    Relative names are resolved against the file's package; one that climbs past the top stays dotted.
    """
    package = ".".join(source.rel[:-1])
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _Import(alias.name, node.lineno, relative=False)
        elif isinstance(node, ast.ImportFrom):
            relative = node.level > 0
            base = _resolve("." * node.level + (node.module or ""), package) if relative else node.module or ""
            yield _Import(base, node.lineno, relative, from_base=any(a.name != "*" for a in node.names))
            for alias in node.names:
                if alias.name != "*":
                    yield _Import(f"{base}.{alias.name}" if base else alias.name, node.lineno, relative)
        elif isinstance(node, ast.Call) and _is_dynamic_importer(node.func) and node.args:
            name = _string(node.args[0])
            if name is None:
                continue
            if name.startswith("."):
                anchor = node.args[1] if len(node.args) > 1 else _keyword(node, "package")
                if isinstance(anchor, ast.Name) and anchor.id == "__package__":
                    yield _Import(_resolve(name, package), node.lineno, relative=True)
                elif anchor is not None and (anchor_name := _string(anchor)) is not None:
                    yield _Import(_resolve(name, anchor_name), node.lineno, relative=True)
                # Any other anchor is only known at run time; nothing to check statically.
            else:
                yield _Import(name, node.lineno, relative=False)


def _resolve(name: str, package: str) -> str:
    """importlib's relative-name resolution; a name that climbs past the top package is returned unresolved."""
    level = len(name) - len(name.lstrip("."))
    bits = package.split(".") if package else []
    if level - 1 >= len(bits):
        return name
    base = ".".join(bits[: len(bits) - (level - 1)])
    rest = name[level:]
    return f"{base}.{rest}" if rest else base


def _is_dynamic_importer(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in _DYNAMIC_IMPORTERS
    return isinstance(func, ast.Attribute) and func.attr in _DYNAMIC_IMPORTERS


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _vendor_of(module: str) -> str | None:
    return next((v for v in VENDOR_SDK_MODULES if module == v or module.startswith(v + ".")), None)


def _service_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "services" and parts[1] in SERVICE_NAMES:
        return parts[1]
    return None


def _report(violations: list[Violation]) -> list[Violation]:
    """Sorted, one per finding: `from openai import OpenAI` loads both openai and openai.OpenAI."""
    return sorted(set(violations), key=lambda v: (v.path, v.line, v.message))
