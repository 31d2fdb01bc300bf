"""What the authorization matrix test tried, for the terminal summary (tests/conftest.py prints it)."""

from __future__ import annotations

from collections import Counter

# (service, "allowed" | "denied") -> combinations tried
COUNTS: Counter[tuple[str, str]] = Counter()


def record(service: str, *, allowed: bool) -> None:
    COUNTS[(service, "allowed" if allowed else "denied")] += 1


def export_counts() -> list[tuple[str, str, int]]:
    """This process's counts as plain data, for a pytest-xdist worker to hand to the controller."""
    return [(service, verdict, n) for (service, verdict), n in COUNTS.items()]


def import_counts(exported: list[tuple[str, str, int]]) -> None:
    """Adds counts another process exported (a pytest-xdist worker's) to this one's."""
    for service, verdict, n in exported:
        COUNTS[(service, verdict)] += n


def summary_lines() -> list[str]:
    if not COUNTS:
        return []
    services = sorted({service for service, _ in COUNTS})
    total = sum(COUNTS.values())
    lines = [f"{total} (caller, credential, RPC) combinations, each allowed or denied as its access table says"]
    for service in services:
        allowed, denied = COUNTS[(service, "allowed")], COUNTS[(service, "denied")]
        lines.append(f"  {service:<12} {allowed + denied:>5}  allowed {allowed}, denied {denied}")
    return lines
