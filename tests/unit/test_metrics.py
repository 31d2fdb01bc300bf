"""The metric catalog (services/common/metrics.py) is the one list of series: the README's Metrics table names
each of them, and a source that cannot be read does not hide the others."""

from __future__ import annotations

from pathlib import Path

from services.common.metrics import DECLARED, ObservedGauge, Reading
from tests.support.metrics import in_memory_reader

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_metrics_table_lists_every_declared_series() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Metrics") :]
    section = section[: section.index("\n## ")]
    missing = [d.name for d in DECLARED if f"`{d.name}` (`{d.prometheus_name}`)" not in section]
    assert missing == []


class _Source:
    def __init__(self, value: float | None) -> None:
        self.value = value

    def read(self) -> Reading:
        if self.value is None:
            raise ConnectionError("database down")
        return [(self.value, {"source": str(self.value)})]


def _gauge_values(name: str) -> list[float]:
    data = in_memory_reader().get_metrics_data()
    assert data is not None
    return sorted(
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points  # type: ignore[union-attr]
    )


def test_an_observed_gauge_reports_its_readable_sources_and_drops_the_ones_gone() -> None:
    in_memory_reader()
    gauge = ObservedGauge("test.observed.gauge", "{item}", "a gauge of this test")
    kept, broken, gone = _Source(3), _Source(None), _Source(5)
    gauge.register(kept.read)
    gauge.register(broken.read)
    gauge.register(gone.read)
    del gone
    assert _gauge_values("test.observed.gauge") == [3]


def test_custody_up_serves_each_services_metrics_on_its_port_plus_1000(tmp_path: Path) -> None:
    from services.cli.stack import METRICS_PORT_OFFSET, plan
    from services.cli.state import StateLayout, initialize
    from services.common.catalog import SERVICES

    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    urls = {p.service: p.metrics_url for p in plan(layout, {}) if p.is_service}
    assert urls == {
        name: f"http://127.0.0.1:{spec.default_port + METRICS_PORT_OFFSET}/metrics" for name, spec in SERVICES.items()
    }
