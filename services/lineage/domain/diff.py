"""Version diffs: an RFC 6902 JSON Patch from base to target, and the paths it touches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch


@dataclass(frozen=True)
class Diff:
    patch: tuple[dict[str, Any], ...]
    changed_paths: tuple[str, ...]
    counts: Mapping[str, int]

    @property
    def identical(self) -> bool:
        return not self.patch


def diff(base: Mapping[str, Any], target: Mapping[str, Any]) -> Diff:
    """Applying `patch` to base gives target (jsonpatch computes it; it may use move/copy for relocations)."""
    operations = tuple(jsonpatch.make_patch(dict(base), dict(target)).patch)
    paths: set[str] = set()
    counts = {"add": 0, "remove": 0, "replace": 0, "move": 0, "copy": 0}
    for op in operations:
        paths.add(op["path"])
        if "from" in op:
            paths.add(op["from"])
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return Diff(operations, tuple(sorted(paths)), counts)
