"""Generates the committed Python contracts (package `custody`) from protos/.

`make proto` writes them into the repository; the drift test generates into a temporary directory and compares.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
GENERATED_PACKAGE = "custody"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path, only: list[str] | None = None) -> list[Path]:
    """Runs protoc (with the mypy-protobuf plugins) into out_dir and returns every file it wrote.

    `only` limits generation to some proto packages (e.g. ["runs"]), so one service's work in progress does not
    stop another's regeneration."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: only needed when regenerating

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = [
        str(p.relative_to(PROTO_ROOT))
        for p in proto_files()
        if only is None or p.relative_to(PROTO_ROOT).parts[1] in only
    ]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    bin_dir = Path(sys.executable).parent
    # protoc finds the mypy plugins on PATH; make sure the venv's bin comes first.
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see its output above")
    package_root = out_dir / GENERATED_PACKAGE
    for directory in [package_root, *(d for d in package_root.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    return sorted(p for p in package_root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def main() -> None:
    written = generate(REPO_ROOT, sys.argv[1:] or None)
    print(f"generated {len(written)} files under {REPO_ROOT / GENERATED_PACKAGE}")


if __name__ == "__main__":
    main()
