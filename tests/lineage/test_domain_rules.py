"""The rules the store applies inside its transactions, as the domain states them (registration, birth health)."""

from __future__ import annotations

import pytest

from services.common.errors import AlreadyExists, FailedPrecondition
from services.lineage.domain.birth import BORN_VALID, InputState, health_at_birth
from services.lineage.domain.model import Health, TypeDefinition
from services.lineage.domain.registration import check_registration

DEFINITION = TypeDefinition("brief", "marketing", "1", {"type": "object"})


def test_a_new_type_is_inserted() -> None:
    assert check_registration(DEFINITION, None, None) is True


def test_a_new_schema_version_of_the_owning_policy_is_inserted() -> None:
    assert check_registration(DEFINITION, "marketing", None) is True


def test_the_identical_registration_again_is_kept_not_inserted() -> None:
    assert check_registration(DEFINITION, "marketing", DEFINITION.definition_sha256) is False


def test_another_policys_type_is_refused_naming_the_owner() -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check_registration(DEFINITION, "design", None)
    assert raised.value.reason == "TYPE_IN_OTHER_POLICY"
    assert [v.field for v in raised.value.violations] == ["policy"]


def test_ownership_is_checked_before_the_schema_version() -> None:
    with pytest.raises(FailedPrecondition):
        check_registration(DEFINITION, "design", "0" * 64)


def test_a_changed_definition_under_a_registered_schema_version_is_refused() -> None:
    with pytest.raises(AlreadyExists) as raised:
        check_registration(DEFINITION, "marketing", "0" * 64)
    assert raised.value.reason == "TYPE_VERSION_EXISTS"


def test_a_version_without_inputs_is_born_valid() -> None:
    assert health_at_birth([]) == BORN_VALID


def test_a_version_on_valid_current_inputs_is_born_valid() -> None:
    inputs = [InputState("a", Health.VALID, None, None), InputState("b", Health.CONFIRMED_VALID, None, None)]
    assert health_at_birth(inputs) == BORN_VALID


def test_a_version_on_a_needs_revision_input_is_born_valid() -> None:
    assert health_at_birth([InputState("a", Health.NEEDS_REVISION, None, None)]) == BORN_VALID


def test_a_version_on_a_superseded_input_is_born_stale_caused_by_the_newer_version() -> None:
    born = health_at_birth([InputState("a/versions/1", Health.VALID, None, 7)])
    assert (born.health, born.cause) == (Health.STALE, 7)
    assert "superseded" in born.rationale


def test_a_version_on_a_stale_input_is_born_stale_with_the_same_cause() -> None:
    born = health_at_birth([InputState("a/versions/1", Health.STALE, 5, None)])
    assert (born.health, born.cause) == (Health.STALE, 5)
    assert "a/versions/1, which is stale" in born.rationale


def test_the_first_input_in_upstream_order_decides_the_cause() -> None:
    inputs = [
        InputState("a", Health.VALID, None, None),
        InputState("b", Health.STALE, 3, None),
        InputState("c", Health.VALID, None, 9),
    ]
    assert health_at_birth(inputs).cause == 3
