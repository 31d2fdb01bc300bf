"""The AST guards: the real repository passes them, and each catches the violations it exists for."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.guards.checks import (
    Violation,
    cross_service_imports,
    provider_key_names,
    python_files,
    tls_outside_its_package,
    vendor_sdk_imports,
)

Check = Callable[..., list[Violation]]
ALL_CHECKS: list[Check] = [vendor_sdk_imports, provider_key_names, cross_service_imports, tls_outside_its_package]


def plant(root: Path, rel: str, source: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))


def at(violations: list[Violation]) -> list[tuple[str, int]]:
    return [(v.path, v.line) for v in violations]


def shown(violations: list[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


# --- the real repository -------------------------------------------------------------------------------------------


def test_the_guards_scan_the_real_services_tree():
    files = python_files()
    assert any(p.name == "catalog.py" for p in files)
    assert not any("__pycache__" in p.parts for p in files)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_the_real_repository_passes(check: Check):
    violations = check()
    assert violations == [], "\n" + shown(violations)


# --- vendor SDK imports --------------------------------------------------------------------------------------------

VENDOR_IMPORTS = {
    "import": ("import openai\n", 1),
    "import-submodule-as": ("import os\nimport openai.types as x\n", 2),
    "from-import": ("from openai import OpenAI\n", 1),
    "from-submodule-import": ("import os\n\nfrom openai.types import y\n", 3),
    "import-as": ("import anthropic as a\n", 1),
    "from-package-import-module": ("from google import genai\n", 1),
    "google-generativeai": ("import google.generativeai as genai\n", 1),
    "litellm": ("from litellm import completion\n", 1),
    "importlib-import-module": ('import importlib\n\nimportlib.import_module("openai")\n', 3),
    "importlib-import-submodule": ('import importlib\nimportlib.import_module("openai.resources")\n', 2),
    "dunder-import": ('__import__("anthropic")\n', 1),
    "imported-import-module": ('from importlib import import_module\n\n\nimport_module("openai")\n', 4),
    "inside-a-function": ("def call():\n    import cohere\n\n    return cohere\n", 2),
}


@pytest.mark.parametrize(("source", "line"), VENDOR_IMPORTS.values(), ids=VENDOR_IMPORTS.keys())
def test_a_vendor_sdk_import_outside_the_transport_is_reported(tmp_path: Path, source: str, line: int):
    plant(tmp_path, "services/runs/bad.py", source)
    assert at(vendor_sdk_imports(tmp_path)) == [("services/runs/bad.py", line)]


def test_a_vendor_sdk_import_elsewhere_in_the_gateway_is_reported(tmp_path: Path):
    plant(tmp_path, "services/ai_gateway/servicer.py", "import openai\n")
    assert at(vendor_sdk_imports(tmp_path)) == [("services/ai_gateway/servicer.py", 1)]


def test_a_vendor_sdk_import_inside_the_transport_is_allowed(tmp_path: Path):
    plant(
        tmp_path,
        "services/ai_gateway/transport/openai_provider.py",
        """
        import importlib

        import anthropic
        import openai
        from google import genai

        cohere = importlib.import_module("cohere")
        """,
    )
    assert vendor_sdk_imports(tmp_path) == []


@pytest.mark.parametrize(
    "source",
    [
        "from . import openai\n",
        "from .openai import OpenAI\n",
        "from .transport import anthropic\n",
        "import openai_compat\n",
        "import google.protobuf\n",
        "from google import protobuf\n",
        'name = "openai"\n',
    ],
)
def test_relative_imports_and_lookalike_names_are_not_vendor_imports(tmp_path: Path, source: str):
    plant(tmp_path, "services/runs/fine.py", source)
    assert vendor_sdk_imports(tmp_path) == []


# --- provider key names --------------------------------------------------------------------------------------------

KEY_NAMES = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "COHERE_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "TOGETHER_API_KEY",
    "REPLICATE_API_TOKEN",
]


@pytest.mark.parametrize("name", KEY_NAMES)
def test_a_provider_key_name_outside_the_transport_is_reported(tmp_path: Path, name: str):
    plant(tmp_path, "services/runs/bad.py", f'"""Runs."""\n\nKEY_VARIABLE = "{name}"\n')
    assert at(provider_key_names(tmp_path)) == [("services/runs/bad.py", 3)]


KEY_USES = {
    "environ-subscript": ('import os\n\nkey = os.environ["OPENAI_API_KEY"]\n', 3),
    "getenv": ('import os\nkey = os.getenv("ANTHROPIC_API_KEY", "")\n', 2),
    "f-string-literal-part": ('prefix = "X"\nname = f"{prefix}AZURE_OPENAI_API_KEY"\n', 2),
    "f-string-without-fields": ('name = f"GEMINI_API_KEY"\n', 1),
    "default-argument": ('def key(name="COHERE_API_KEY"):\n    return name\n', 1),
    "bytes": ('name = b"GROQ_API_KEY"\n', 1),
}


@pytest.mark.parametrize(("source", "line"), KEY_USES.values(), ids=KEY_USES.keys())
def test_a_provider_key_name_is_reported_however_it_is_used(tmp_path: Path, source: str, line: int):
    plant(tmp_path, "services/art_studio/bad.py", source)
    assert at(provider_key_names(tmp_path)) == [("services/art_studio/bad.py", line)]


def test_a_provider_key_name_elsewhere_in_the_gateway_is_reported(tmp_path: Path):
    plant(tmp_path, "services/ai_gateway/config.py", 'KEY = "OPENAI_API_KEY"\n')
    assert at(provider_key_names(tmp_path)) == [("services/ai_gateway/config.py", 1)]


def test_a_provider_key_name_inside_the_transport_is_allowed(tmp_path: Path):
    plant(
        tmp_path,
        "services/ai_gateway/transport/openai_provider.py",
        'import os\n\nkey = os.environ["OPENAI_API_KEY"]\n',
    )
    assert provider_key_names(tmp_path) == []


@pytest.mark.parametrize(
    "text",
    [
        "OPENAI",
        "openai_api_key",
        "OPENAI_MODEL",
        "API_KEY",
        "CUSTODY_RUNS_API_KEY",
        "Keys such as OPENAI_API_KEY live only in the gateway transport.",
    ],
)
def test_strings_that_are_not_provider_key_names_are_not_reported(tmp_path: Path, text: str):
    plant(tmp_path, "services/runs/fine.py", f"TEXT = {text!r}\n")
    assert provider_key_names(tmp_path) == []


# --- cross-service imports -----------------------------------------------------------------------------------------

CROSS_SERVICE_IMPORTS = {
    "import": ("import services.runs\n", 1),
    "import-module-as": ("import os\nimport services.runs.store as store\n", 2),
    "from-module-import": ("import os\nfrom services.runs.x import y\n", 2),
    "from-package-import-service": ("from services import runs\n", 1),
    "importlib": ('import importlib\n\nimportlib.import_module("services.runs.store")\n', 3),
    "dunder-import": ('__import__("services.runs")\n', 1),
    "importlib-relative-with-package": (
        'from importlib import import_module\nimport_module(".store", "services.runs")\n',
        2,
    ),
    "relative-sibling-module": ("from ..runs import x\n", 1),
    "relative-sibling-package": ("from .. import runs\n", 1),
    "relative-dunder-package": ('import importlib\nimportlib.import_module("..runs", __package__)\n', 2),
}


@pytest.mark.parametrize(("source", "line"), CROSS_SERVICE_IMPORTS.values(), ids=CROSS_SERVICE_IMPORTS.keys())
def test_a_service_importing_another_service_is_reported(tmp_path: Path, source: str, line: int):
    plant(tmp_path, "services/lineage/bad.py", source)
    assert at(cross_service_imports(tmp_path)) == [("services/lineage/bad.py", line)]


def test_a_relative_import_is_resolved_against_a_nested_package(tmp_path: Path):
    plant(tmp_path, "services/lineage/domain/rules.py", "from ...runs.store import RunStore\n")
    assert at(cross_service_imports(tmp_path)) == [("services/lineage/domain/rules.py", 1)]


def test_each_service_imported_on_one_line_is_reported(tmp_path: Path):
    plant(tmp_path, "services/art_studio/bad.py", "from services import lineage, runs\n")
    messages = [v.message for v in cross_service_imports(tmp_path)]
    assert len(messages) == 2
    assert any("'lineage'" in m for m in messages)
    assert any("'runs'" in m for m in messages)


@pytest.mark.parametrize(
    "source",
    ["from services.runs import store\n", "import services.ai_gateway.main\n", "from ..lineage import x\n"],
)
def test_the_common_platform_importing_any_service_is_reported(tmp_path: Path, source: str):
    plant(tmp_path, "services/common/bad.py", source)
    assert at(cross_service_imports(tmp_path)) == [("services/common/bad.py", 1)]


@pytest.mark.parametrize("source", ["from services.art_studio import studio\n", "import services.runs.feasibility\n"])
def test_the_shared_rosette_contract_importing_any_service_is_reported(tmp_path: Path, source: str):
    """Producer and verifier share the rosette contract only while it belongs to neither."""
    plant(tmp_path, "services/rosette/bad.py", source)
    assert at(cross_service_imports(tmp_path)) == [("services/rosette/bad.py", 1)]


def test_a_relative_import_beyond_the_top_package_is_reported(tmp_path: Path):
    plant(tmp_path, "services/runs/bad.py", "from ... import x\n")
    assert at(cross_service_imports(tmp_path)) == [("services/runs/bad.py", 1)]


def test_a_service_may_import_common_contracts_itself_stdlib_and_third_party(tmp_path: Path):
    plant(
        tmp_path,
        "services/runs/x.py",
        """
        import importlib
        import json

        import grpc

        import services.common.hashing
        from custody.runs.v1 import runs_pb2
        from services import common
        from services.common.hashing import sha256_bytes
        from services.runs.store import RunStore

        from . import store
        from .. import common as platform
        from .store import RunStore as Store

        importlib.import_module("services.runs.store")
        """,
    )
    plant(tmp_path, "services/runs/__init__.py", "from . import x\nfrom .x import y\n")
    assert cross_service_imports(tmp_path) == []


def test_the_operator_cli_may_import_each_services_main_config_and_migrations(tmp_path: Path):
    plant(
        tmp_path,
        "services/cli/main.py",
        """
        import importlib

        import services.runs.main
        import services.runs.migrations.env
        from services.art_studio.config import ArtStudioSettings
        from services.lineage import main
        from services.lineage import config, migrations

        importlib.import_module("services.ai_gateway.main")
        """,
    )
    assert cross_service_imports(tmp_path) == []


CLI_INTERNAL_IMPORTS = {
    "domain": ("from services.runs.domain.attachments import CHUNK_LIMIT_BYTES\n", 1),
    "import-module": ("import services.runs.domain\n", 1),
    "from-package": ("from services.runs import domain\n", 1),
    "bare-package": ("import services.lineage\n", 1),
    "store": ("import os\nfrom services.lineage.store import LineageStore\n", 2),
    "importlib": ('import importlib\n\nimportlib.import_module("services.ai_gateway.transport")\n', 3),
    "lookalike": ("from services.runs.mainframe import x\n", 1),
    "relative": ("from ..runs import domain\n", 1),
}


@pytest.mark.parametrize(("source", "line"), CLI_INTERNAL_IMPORTS.values(), ids=CLI_INTERNAL_IMPORTS.keys())
def test_the_operator_cli_importing_a_service_internal_is_reported(tmp_path: Path, source: str, line: int):
    plant(tmp_path, "services/cli/runs_tool.py", source)
    assert at(cross_service_imports(tmp_path)) == [("services/cli/runs_tool.py", line)]


# Every CLI file that once imported a service internal, with what it imported: no file has an exception.
FORMER_CLI_INTERNAL_IMPORTS = {
    "legacy-model": ("services/cli/legacy.py", "from services.runs.model import RunContent\n"),
    "migrate-convert": ("services/cli/runs_commands.py", "from services.runs import convert\n"),
    "upload-limit": ("services/cli/runs_commands.py", "from services.runs.domain import attachments\n"),
    "discovery-names": ("services/cli/pipeline/discovery.py", "from services.lineage.domain import names\n"),
    "recipe-policy": ("services/cli/pipeline/recipe.py", "import services.lineage.domain.policy\n"),
    "driver-schemas": ("services/cli/pipeline/driver.py", "import services.lineage.domain.schemas\n"),
}


@pytest.mark.parametrize(
    ("path", "source"), FORMER_CLI_INTERNAL_IMPORTS.values(), ids=FORMER_CLI_INTERNAL_IMPORTS.keys()
)
def test_no_cli_file_may_import_a_service_internal_not_even_one_it_once_did(tmp_path: Path, path: str, source: str):
    plant(tmp_path, path, source)
    assert at(cross_service_imports(tmp_path)) == [(path, 1)]


# --- unreadable files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_a_file_that_does_not_parse_is_reported(tmp_path: Path, check: Check):
    plant(tmp_path, "services/runs/fine.py", "import json\n")
    plant(tmp_path, "services/runs/broken.py", "import json\n\ndef run(:\n    pass\n")
    violations = check(tmp_path)
    assert at(violations) == [("services/runs/broken.py", 3)]
    assert "cannot parse" in violations[0].message


def test_a_tree_without_services_fails_loudly_instead_of_passing(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        vendor_sdk_imports(tmp_path)


def test_cached_bytecode_directories_are_not_scanned(tmp_path: Path):
    plant(tmp_path, "services/runs/__pycache__/stale.py", "import openai\n")
    assert vendor_sdk_imports(tmp_path) == []


# --- X.509 and TLS credentials in one package -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("from cryptography import x509\n", 1),
        ("import os\nfrom cryptography.x509 import load_pem_x509_certificate\n", 2),
        ("import cryptography.x509.oid\n", 1),
        ("import grpc\n\ncredentials = grpc.ssl_channel_credentials(b'ca')\n", 3),
        ("from grpc import ssl_server_credentials\n", 1),
        ("import grpc\ngrpc.dynamic_ssl_server_credentials(a, b)\n", 2),
    ],
    ids=["from-import", "from-submodule", "import-submodule", "channel-credentials", "import-name", "dynamic"],
)
def test_x509_or_tls_credentials_outside_the_tls_package_are_reported(tmp_path: Path, source: str, line: int):
    plant(tmp_path, "services/runs/peers.py", source)
    assert ("services/runs/peers.py", line) in at(tls_outside_its_package(tmp_path))


def test_x509_and_tls_credentials_inside_the_tls_package_are_allowed(tmp_path: Path):
    plant(
        tmp_path,
        "services/common/tls/credentials.py",
        "import grpc\nfrom cryptography import x509\ngrpc.ssl_channel_credentials()\n",
    )
    assert tls_outside_its_package(tmp_path) == []


def test_other_cryptography_is_not_tls(tmp_path: Path):
    plant(tmp_path, "services/common/evidence/keys.py", "from cryptography.hazmat.primitives.asymmetric import ec\n")
    assert tls_outside_its_package(tmp_path) == []
