"""Fixtures: each Kubernetes overlay rendered once per session with `kubectl kustomize`, handed to each test as
a fresh copy (so a test may break it), and the compose file with its default interpolation."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import checks


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    """`kubectl kustomize` output of each overlay, as kubectl apply would receive it."""
    return {overlay: checks.render_overlay(checks.K8S_DIR / "overlays" / overlay) for overlay in checks.K8S_OVERLAYS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[checks.Manifest]]:
    return {overlay: checks.load_manifests(text) for overlay, text in rendered_text.items()}


@pytest.fixture(params=checks.K8S_OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manifests(rendered: dict[str, list[checks.Manifest]], overlay: str) -> list[checks.Manifest]:
    return copy.deepcopy(rendered[overlay])


@pytest.fixture
def prod(rendered: dict[str, list[checks.Manifest]]) -> list[checks.Manifest]:
    """A copy of the prod overlay, for the tests that break something on purpose."""
    return copy.deepcopy(rendered["prod"])


@pytest.fixture
def compose() -> dict[str, Any]:
    return checks.load_compose()


@pytest.fixture(scope="session")
def with_cert_manager() -> list[checks.Manifest]:
    """The prod overlay with the cert-manager component, rendered once."""
    overlay = checks.K8S_DIR / "overlays" / "prod"
    return checks.load_manifests(checks.render_with_component(overlay, checks.CERT_MANAGER_COMPONENT))


@pytest.fixture(scope="session")
def with_console_ingress_text() -> str:
    """The prod overlay with the console-ingress component, rendered once."""
    overlay = checks.K8S_DIR / "overlays" / "prod"
    return checks.render_with_component(overlay, checks.CONSOLE_INGRESS_COMPONENT)


@pytest.fixture
def with_console_ingress(with_console_ingress_text: str) -> list[checks.Manifest]:
    return checks.load_manifests(with_console_ingress_text)


@pytest.fixture(scope="session")
def with_s3_blobs_text() -> str:
    """The prod overlay with the s3-blobs component, rendered once."""
    overlay = checks.K8S_DIR / "overlays" / "prod"
    return checks.render_with_component(overlay, checks.S3_BLOBS_COMPONENT)


@pytest.fixture
def with_s3_blobs(with_s3_blobs_text: str) -> list[checks.Manifest]:
    return checks.load_manifests(with_s3_blobs_text)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `custody init` writes: credentials, config/<service>.yaml with each token, operator.token."""
    root = tmp_path_factory.mktemp("k8s-state")
    custody = str(checks.venv_tool("custody"))
    subprocess.run([custody, "init", "--state-dir", str(root)], check=True, capture_output=True)
    return root
