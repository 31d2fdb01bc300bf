"""services.common.graphs.find_cycle: the cycle finder lineage's policies and the recipe driver's stages share."""

from __future__ import annotations

from services.common.graphs import find_cycle


def test_a_graph_without_a_cycle_has_none() -> None:
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_a_cycle_is_named_node_by_node_with_its_first_node_repeated() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]


def test_a_node_pointing_at_itself_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_only_the_cycle_is_named_not_the_path_that_led_to_it() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]


def test_a_node_missing_from_the_mapping_points_nowhere() -> None:
    assert find_cycle({"a": ["elsewhere"]}) is None


def test_the_same_graph_names_the_same_cycle_whatever_the_mapping_order() -> None:
    graph = {"z": ["y"], "y": ["z"], "b": ["a"], "a": ["b"]}
    assert find_cycle(graph) == find_cycle(dict(reversed(graph.items()))) == ["a", "b", "a"]
