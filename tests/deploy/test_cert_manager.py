"""deploy/k8s/components/cert-manager: added to an overlay it issues every server's certificate (and the review
console's) into the Secret the server mounts, in the shape `custody init` issues (from the code: SPIFFE ID, DNS
names, usages), from a CA of the deployment's own that no pod can read, and every deployment rule still holds."""

from __future__ import annotations

from typing import Any

from services.common.catalog import PROCESS_NAMES
from services.common.tls.certificates import DEFAULT_TRUST_DOMAIN, LOOPBACK_ADDRESSES, service_dns_names, spiffe_id
from tests.deploy import checks
from tests.deploy.checks import Manifest


def of_kind(docs: list[Manifest], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def service_certificates(docs: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Service (or console) -> the spec of the Certificate that writes its Secret."""
    by_secret = {d["spec"]["secretName"]: d["spec"] for d in of_kind(docs, "Certificate").values()}
    return {name: by_secret[checks.tls_secret(name)] for name in PROCESS_NAMES if checks.tls_secret(name) in by_secret}


def test_every_server_and_the_console_get_a_certificate_into_the_secret_they_mount(with_cert_manager: list[Manifest]):
    assert set(service_certificates(with_cert_manager)) == set(PROCESS_NAMES)
    tls_secrets = {s for s in checks.referenced_secrets(with_cert_manager) if s.endswith("-tls")}
    assert tls_secrets == {checks.tls_secret(name) for name in PROCESS_NAMES}


def test_each_certificate_has_the_shape_custody_init_issues(with_cert_manager: list[Manifest]):
    for name, spec in service_certificates(with_cert_manager).items():
        assert spec["uris"] == [spiffe_id(DEFAULT_TRUST_DOMAIN, name)], name
        assert spec["dnsNames"] == list(service_dns_names(name)), name
        assert spec["ipAddresses"] == list(LOOPBACK_ADDRESSES), name
        assert {"server auth", "client auth"} <= set(spec["usages"]), name
        assert (spec["privateKey"]["algorithm"], spec["privateKey"]["size"]) == ("ECDSA", 256), name
        assert not spec.get("isCA"), name


def test_each_certificate_is_renewed_with_a_new_key_before_it_expires(with_cert_manager: list[Manifest]):
    for name, spec in service_certificates(with_cert_manager).items():
        assert spec["privateKey"]["rotationPolicy"] == "Always", name
        assert spec["renewBefore"] and spec["duration"], name


def test_the_servers_certificates_come_from_the_components_own_ca(with_cert_manager: list[Manifest]):
    issuers = of_kind(with_cert_manager, "Issuer")
    certificates = of_kind(with_cert_manager, "Certificate")
    for name, spec in service_certificates(with_cert_manager).items():
        issuer = issuers[spec["issuerRef"]["name"]]
        assert spec["issuerRef"]["kind"] == "Issuer", name
        ca = next(
            c["spec"] for c in certificates.values() if c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
        )
        assert ca["isCA"] is True
        assert "selfSigned" in issuers[ca["issuerRef"]["name"]]["spec"]


def test_no_pod_reads_the_cas_private_key(with_cert_manager: list[Manifest]):
    ca_secrets = {
        c["spec"]["secretName"] for c in of_kind(with_cert_manager, "Certificate").values() if c["spec"].get("isCA")
    }
    assert ca_secrets and not ca_secrets & checks.referenced_secrets(with_cert_manager)


def test_everything_lives_in_the_deployments_namespace(with_cert_manager: list[Manifest]):
    namespaces = {d["metadata"].get("namespace") for d in with_cert_manager if d["kind"] in ("Issuer", "Certificate")}
    assert namespaces == {"custody"}


def test_every_deployment_rule_holds_with_the_component(with_cert_manager: list[Manifest]):
    assert [problem for check in checks.K8S_CHECKS for problem in check(with_cert_manager)] == []
