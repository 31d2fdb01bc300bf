"""Validating an asset's content credentials offline against trust anchors, as any consumer would: c2pa-python
checks the signature, the certificate chain up to an anchor and the hard binding to the asset's bytes; this
module adds what Custody's credentials must also hold (one `c2pa.created` action and a well-formed Custody
assertion). Nothing here reaches the network."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import c2pa

from services.common.content_credentials.errors import CredentialsError
from services.common.content_credentials.manifest import (
    ACTIONS_LABEL,
    ASSERTION_LABEL,
    CREATED,
    CustodyAssertion,
    Generator,
)
from services.common.content_credentials.media import SUPPORTED_MEDIA_TYPES
from services.common.content_credentials.signing import NO_NETWORK

TRUSTED, VALID, INVALID, MISSING = "Trusted", "Valid", "Invalid", "Missing"


@dataclass(frozen=True)
class CredentialReport:
    media_type: str
    # Trusted (signed under an anchor), Valid (intact, but not under an anchor), Invalid, or Missing (no manifest).
    state: str
    # Trusted by c2pa and a Custody credential: the one verdict to act on.
    trusted: bool
    # Every reason it is not trusted ("code: explanation"); empty when trusted.
    problems: tuple[str, ...]
    # The signing certificate's common name and its issuer's organization, as the manifest states them.
    signer: str
    signer_issuer: str
    source_type: str
    actions: tuple[str, ...]
    generator: Generator | None
    assertion: CustodyAssertion | None
    manifest_label: str

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["problems"], document["actions"] = list(self.problems), list(self.actions)
        return document


def read_credentials(data: bytes, media_type: str, trust_anchors_pem: bytes) -> CredentialReport:
    if media_type not in SUPPORTED_MEDIA_TYPES:
        raise CredentialsError(f"Custody reads credentials of {', '.join(sorted(SUPPORTED_MEDIA_TYPES))}")
    try:
        anchors = trust_anchors_pem.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialsError("the trust anchors are not PEM text") from None
    settings = {"verify": {**NO_NETWORK, "verify_trust": True}, "trust": {"trust_anchors": anchors}}
    try:
        reader = c2pa.Reader(media_type, io.BytesIO(data), context=c2pa.Context.from_dict(settings))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in str(exc):
            return _missing(media_type)
        raise CredentialsError(f"the {media_type} cannot be read: {exc}") from None
    try:
        store = json.loads(reader.json())
        state = str(reader.get_validation_state() or INVALID)
    finally:
        reader.close()
    return _report(media_type, state, store)


def _missing(media_type: str) -> CredentialReport:
    return CredentialReport(
        media_type,
        MISSING,
        False,
        ("no content credentials: the asset carries no C2PA manifest",),
        "",
        "",
        "",
        (),
        None,
        None,
        "",
    )


def _report(media_type: str, state: str, store: dict[str, Any]) -> CredentialReport:
    label = str(store.get("active_manifest", ""))
    manifest = store.get("manifests", {}).get(label, {})
    problems = [f"{f.get('code')}: {f.get('explanation', '')}" for f in _failures(store)]
    if state != TRUSTED:
        problems.append(f"c2pa validation state is {state}, not {TRUSTED} under the given trust anchors")
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    listed = (assertions.get(ACTIONS_LABEL) or {}).get("actions", [])
    actions = tuple(str(a.get("action")) for a in listed)
    created = next((a for a in listed if a.get("action") == CREATED), None)
    if actions != (CREATED,):
        problems.append(f"the manifest's actions are {list(actions)}, not one {CREATED}")
    assertion = None
    try:
        assertion = CustodyAssertion.from_dict(assertions.get(ASSERTION_LABEL) or {})
    except CredentialsError as exc:
        problems.append(f"{ASSERTION_LABEL}: {exc}")
    parameters = (created or {}).get("parameters") or {}
    generator = None
    if created is not None and "custody.provider" in parameters:
        generator = Generator(
            provider=str(parameters.get("custody.provider", "")),
            model=str(parameters.get("custody.model", "")),
            custody_version=str((created.get("softwareAgent") or {}).get("version", "")),
        )
    signature = manifest.get("signature_info", {})
    return CredentialReport(
        media_type=media_type,
        state=state,
        trusted=not problems,
        problems=tuple(problems),
        signer=str(signature.get("common_name", "")),
        signer_issuer=str(signature.get("issuer", "")),
        source_type=str((created or {}).get("digitalSourceType", "")),
        actions=actions,
        generator=generator,
        assertion=assertion,
        manifest_label=label,
    )


def _failures(store: dict[str, Any]) -> list[dict[str, Any]]:
    results = store.get("validation_results") or {}
    found = list((results.get("activeManifest") or {}).get("failure", []))
    for ingredient in results.get("ingredientDeltas") or []:
        found.extend((ingredient.get("validationDeltas") or {}).get("failure", []))
    return found
