"""The feasibility engine alone: deterministic decisions, reasons and hashes from SVG + spec bytes."""

from __future__ import annotations

import pytest

from services.runs.feasibility import ENGINE_VERSION, EngineSettings, evaluate
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG, HOSTILE_SVGS, spec, svg_with

SETTINGS = EngineSettings(tool_diameter_mm=0.5)


def test_a_clean_candidate_is_allowed_and_green() -> None:
    result = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).result
    assert (result.decision, result.risk_level, result.reasons) == ("ALLOW", "GREEN", ())


def test_the_same_inputs_give_the_same_hash() -> None:
    assert (
        evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
        == evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
    )


def test_the_hash_changes_with_the_inputs_and_the_settings() -> None:
    base = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
    assert evaluate(CLEAN_SVG + b" ", CLEAN_SPEC, SETTINGS).feasibility_sha256 != base
    assert evaluate(CLEAN_SVG, CLEAN_SPEC, EngineSettings(tool_diameter_mm=0.6)).feasibility_sha256 != base


def test_the_hash_covers_the_engine_version_not_the_request() -> None:
    evaluation = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS)
    assert set(evaluation.inputs) == {"svg_sha256", "spec_sha256", "tool_diameter_mm", "cnc_safe"}
    assert ENGINE_VERSION.startswith("custody-feasibility/")


@pytest.mark.parametrize("reason", sorted(HOSTILE_SVGS))
def test_hostile_svg_is_blocked_with_its_reason(reason: str) -> None:
    result = evaluate(HOSTILE_SVGS[reason], CLEAN_SPEC, SETTINGS).result
    assert result.decision == "BLOCK" and result.risk_level == "RED"
    assert any(r.startswith(reason) for r in result.reasons), result.reasons


def test_paths_are_allowed_outside_cnc_safe_mode() -> None:
    result = evaluate(HOSTILE_SVGS["path_elements"], CLEAN_SPEC, EngineSettings(cnc_safe=False)).result
    assert result.decision == "ALLOW"


def test_every_finding_is_reported_not_just_the_first() -> None:
    svg = svg_with(b'<script>x</script><image href="http://x/y.png"/>')
    reasons = evaluate(svg, spec({"kind": "circle", "r": 0.1}), SETTINGS).result.reasons
    kinds = {r.split(":")[0] for r in reasons}
    assert {"script", "image", "external_href", "feature_below_tool_diameter"} <= kinds


def test_feature_narrower_than_the_tool_blocks() -> None:
    result = evaluate(CLEAN_SVG, spec({"kind": "ring", "inner_r": 40, "outer_r": 40.3}), SETTINGS).result
    assert result.decision == "BLOCK"
    assert any("band width 0.300 mm < tool diameter 0.5 mm" in r for r in result.reasons)


def test_feature_close_to_the_tool_is_a_warning() -> None:
    result = evaluate(CLEAN_SVG, spec({"kind": "ring", "inner_r": 40, "outer_r": 40.6}), SETTINGS).result
    assert result.decision == "ALLOW" and result.risk_level == "GREEN"
    assert any(w.startswith("feature_near_tool_diameter") for w in result.warnings)


def test_overlapping_petals_block() -> None:
    petals = {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 30, "petal_width_deg": 15}
    result = evaluate(CLEAN_SVG, spec(petals), SETTINGS).result
    assert any(r.startswith("petals_overlap") for r in result.reasons)


def test_invalid_spec_blocks_with_the_field_path() -> None:
    result = evaluate(CLEAN_SVG, spec({"kind": "ring", "inner_r": 45, "outer_r": 40}), SETTINGS).result
    assert any(r.startswith("spec_invalid: shapes[0]") for r in result.reasons)


def test_unparseable_inputs_block_instead_of_crashing() -> None:
    result = evaluate(b"<svg", b"{not json", SETTINGS).result
    kinds = {r.split(":")[0] for r in result.reasons}
    assert kinds == {"svg_unparseable", "spec_unparseable"}


def test_complexity_raises_risk_then_blocks() -> None:
    circles = b"".join(b'<circle r="%d"/>' % (i % 40 + 1) for i in range(400))
    assert evaluate(svg_with(circles), CLEAN_SPEC, SETTINGS).result.risk_level == "GREEN"
    medium = evaluate(svg_with(circles), CLEAN_SPEC, SETTINGS).result
    assert any(w.startswith("complex") for w in medium.warnings)
    too_many = evaluate(svg_with(circles * 3), CLEAN_SPEC, SETTINGS).result
    assert any(r.startswith("too_complex") for r in too_many.reasons)


def test_missing_inputs_block() -> None:
    result = evaluate(None, None, SETTINGS).result
    assert {r.split(":")[0] for r in result.reasons} == {"missing_svg", "missing_spec"}
