"""Lists the installed distributions the image does not need at run time (builder stage only).

The image installs the whole hashed lock, as `make install` does, so the hashes checked are the ones CI tested;
the lock also holds the `dev` extra (protoc, pytest, ruff, kubectl...). This walks the installed metadata from
`custody`'s runtime requirements, extras included, and prints every other distribution so the builder can
uninstall it: the final stage carries the runtime closure and nothing else.

Usage: python runtime_closure.py [--keep NAME ...]   (prints one distribution name per line)
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # the builder's pip always vendors it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

PROJECT = "custody"
# Needed to uninstall the rest; the Dockerfile removes them last.
INSTALLERS = frozenset({"pip"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def runtime_closure(project: str = PROJECT) -> set[str]:
    """Canonical names of `project` and everything its non-dev requirements pull in, transitively."""
    closure: set[str] = set()
    pending: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (canonical(name), extras) in seen:
            continue
        seen.add((canonical(name), extras))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is required at run time but not installed") from None
        closure.add(canonical(name))
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, extras):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return closure


def unneeded(project: str = PROJECT, keep: frozenset[str] = INSTALLERS) -> list[str]:
    """Installed distributions outside the runtime closure, except `keep`."""
    needed = runtime_closure(project) | {canonical(k) for k in keep}
    installed = {canonical(d.metadata["Name"]) for d in metadata.distributions()}
    return sorted(installed - needed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="append", default=sorted(INSTALLERS), help="never list this distribution")
    args = parser.parse_args(argv)
    for name in unneeded(keep=frozenset(args.keep)):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
