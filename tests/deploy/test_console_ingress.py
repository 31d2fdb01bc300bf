"""deploy/k8s/components/console-ingress: added to an overlay it puts an Ingress in front of the review console,
speaking HTTPS to it, and lets the ingress controller reach the console's port and nothing else; every deployment
rule still holds."""

from __future__ import annotations

from pathlib import Path

from tests.deploy import checks
from tests.deploy.checks import Manifest


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_component_passes_the_kubernetes_schemas_strictly(with_console_ingress_text: str, tmp_path: Path):
    path = tmp_path / "console-ingress.yaml"
    path.write_text(with_console_ingress_text)
    assert checks.kubernetes_schema_problems(path) == []


def test_every_deployment_rule_holds_with_the_component(with_console_ingress: list[Manifest]):
    assert [problem for check in checks.K8S_CHECKS for problem in check(with_console_ingress)] == []


def test_the_ingress_speaks_https_to_the_consoles_service_on_a_port_it_exposes(with_console_ingress: list[Manifest]):
    assert checks.ingress_problems(with_console_ingress) == []
    assert [d["metadata"]["name"] for d in with_console_ingress if d["kind"] == "Ingress"] == ["console"]


def test_the_ingress_controller_reaches_the_console_and_nothing_else(with_console_ingress: list[Manifest]):
    assert checks.ingress_controller_problems(with_console_ingress) == []


def test_without_the_component_the_ingress_controller_reaches_nothing(prod: list[Manifest]):
    assert checks.ingress_controller_problems(prod) == [
        "NetworkPolicy ingress keeps the ingress controller from console's https port 50080"
    ]


def test_an_ingress_speaking_plain_http_to_the_console_is_reported(with_console_ingress: list[Manifest]):
    del find(with_console_ingress, "Ingress", "console")["metadata"]["annotations"][checks.BACKEND_PROTOCOL_ANNOTATION]
    assert checks.ingress_problems(with_console_ingress) == [
        "Ingress/console: the console serves HTTPS only; nginx.ingress.kubernetes.io/backend-protocol is None, not "
        "'HTTPS'"
    ]


def test_an_ingress_backend_on_a_port_the_service_lacks_is_reported(with_console_ingress: list[Manifest]):
    ingress = find(with_console_ingress, "Ingress", "console")
    ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http"}
    assert checks.ingress_problems(with_console_ingress) == ["Ingress/console: Service/console exposes no port http"]


def test_an_ingress_controller_let_through_to_a_services_port_is_reported(with_console_ingress: list[Manifest]):
    policy = find(with_console_ingress, "NetworkPolicy", "console-ingress-controller")
    policy["spec"]["podSelector"] = {}
    policy["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 50052})
    assert checks.ingress_controller_problems(with_console_ingress) == [
        "NetworkPolicy ingress lets the ingress controller reach runs's grpc port 50052"
    ]
