"""The committed generated code matches protos/, and every RPC has an access rule and documented errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from services.common.catalog import SERVICE_NAMES
from services.common.contracts import service_descriptor
from services.common.protogen import GENERATED_PACKAGE, PROTO_ROOT, REPO_ROOT, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generate(tmp_path)}
    committed_root = REPO_ROOT / GENERATED_PACKAGE
    committed = {
        p.relative_to(REPO_ROOT): p.read_bytes()
        for p in committed_root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(str(p) for p in fresh.keys() | committed.keys() if fresh.get(p) != committed.get(p))
    assert not stale, f"generated code drifted from protos/; run `make proto` and commit: {stale}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_rpc_has_an_access_rule(service: str) -> None:
    access = importlib.import_module(f"services.{service}.access").ACCESS
    methods = {m.name for m in service_descriptor(service).methods}
    assert set(access.rules) == methods


@pytest.mark.parametrize("proto", sorted(PROTO_ROOT.rglob("*.proto")), ids=lambda p: p.name)
def test_every_rpc_documents_its_errors(proto: Path) -> None:
    lines = proto.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("rpc "):
            comment = []
            for above in reversed(lines[:index]):
                if not above.strip().startswith("//"):
                    break
                comment.append(above)
            assert any("Errors:" in c for c in comment), f"{proto.name}: {line.strip()} lacks an 'Errors:' comment"
