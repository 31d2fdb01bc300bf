"""The outage harnesses (bench/faults/) at a small size, against real service processes: each outage is answered
with its documented status, writes nothing half, and the services recover without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults import disk_full, gateway_down, lineage_down, postgres_restart
from bench.faults.stack import Stack

pytestmark = pytest.mark.stack

DATABASE_UNAVAILABLE = "UNAVAILABLE DATABASE_UNAVAILABLE +RetryInfo"


def test_runs_answers_unavailable_with_retry_info_while_postgresql_restarts_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    # No skip: a machine without PostgreSQL's server binaries fails here (ClusterUnavailable says which).
    figures = postgres_restart.run(tmp_path, services=("runs",), before_s=1.0, down_s=2.0)
    runs = figures["services"]["runs"]
    assert runs["unavailable_with_retry_info"] > 0
    assert set(runs["answers_during_outage"]) <= {DATABASE_UNAVAILABLE, "OK"}
    assert runs["ok_before_restart_began"] == 0
    assert runs["internal_or_unknown"] == 0
    assert runs["seconds_to_recover"] is not None
    assert runs["acknowledged_writes"] > 0 and runs["lost"] == 0
    assert figures["services_restarted"] == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("outages")) as running:
        yield running


def test_every_mint_acknowledged_before_lineage_died_is_recorded_there_once_it_is_back(stack: Stack) -> None:
    figures = lineage_down.scenario(stack, mints=6, clients=2, kill_after=0.5, down_s=1.0)
    assert figures["acknowledged_mints"] == 6
    assert figures["delivered_after_return"] == figures["lineage_records"] == 6
    assert figures["mints_without_a_record"] == figures["duplicate_records"] == 0
    assert figures["runs_minted_by_refused_binds"] == 0
    refused = {**figures["binds_refused_while_lineage_down"], **figures["binds_refused_after_lineage_returned"]}
    assert set(refused) <= {"UNAVAILABLE LINEAGE_UNAVAILABLE +RetryInfo"}
    assert figures["other_answers"] == {} and figures["runs_restarted"] == 0


def test_with_ai_gateway_down_art_studio_and_runs_answer_clearly_and_write_nothing_half(stack: Stack) -> None:
    figures = gateway_down.scenario(stack, down_calls=2)
    unavailable = {"UNAVAILABLE DEPENDENCY_UNAVAILABLE +RetryInfo": 2}
    assert figures["generate_new_session"] == figures["generate_existing_session"] == unavailable
    assert figures["suggest_explanation"] == {"OK explanation EXPLANATION_STATUS_ERROR": 2}
    assert figures["explanation_error_reasons"] == ["AI_GATEWAY_FAILED"]
    assert figures["sessions_created_during_outage"] == figures["attachments_added_during_outage"] == 0
    assert figures["candidates_recorded_during_outage"] == figures["advisories_added_during_outage"] == 0
    assert figures["seconds_to_recover"] is not None
    assert figures["explanation_after_return"] == "EXPLANATION_STATUS_READY"
    assert figures["services_restarted"] == 0


def test_a_full_blob_directory_is_resource_exhausted_keeps_no_partial_blob_and_runs_keeps_serving(
    tmp_path: Path,
) -> None:
    figures = disk_full.run(tmp_path, size="1m", blob_bytes=192 * 1024)
    assert figures["uploads_accepted_before_full"] > 0
    assert set(figures["uploads_refused"]) == {"RESOURCE_EXHAUSTED STORAGE_FULL +RetryInfo"}
    assert figures["partial_blobs"] == figures["staged_files_left"] == 0
    assert figures["blob_files_not_acknowledged"] == figures["acknowledged_blobs_missing"] == 0
    assert figures["calls_after_full"] == {"get_service_info": "OK", "create_run": "OK", "small_upload": "OK"}
    assert figures["service_stayed_up"] is True
