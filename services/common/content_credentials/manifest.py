"""What a Custody content credential says: the C2PA manifest definition built for signing, and the Custody
assertion read back out of a validated manifest.

The manifest holds one `c2pa.actions.v2` assertion with a single `c2pa.created` action (its IPTC
digitalSourceType says whether a model made the asset or software made it from a model's output, the marking
EU AI Act Art. 50 asks for) and the Custody assertion `dev.custody.provenance`, which ties the asset to its run,
attachment, unsigned bytes and AI call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common.content_credentials.errors import CredentialsError
from services.common.version import CUSTODY_VERSION

ASSERTION_LABEL = "dev.custody.provenance"
ACTIONS_LABEL = "c2pa.actions.v2"
CREATED = "c2pa.created"
ASSERTION_SCHEMA = "custody.provenance/1"


class SourceType(StrEnum):
    """IPTC digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/)."""

    # A model's output as is: a generated image.
    TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    # Made by software: an SVG compiled deterministically from a model's spec (the model chose the geometry, the
    # compiler drew it). The Custody assertion names the model call the spec came from.
    ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"


@dataclass(frozen=True)
class Generator:
    """What produced the asset (or the output it was compiled from)."""

    provider: str
    model: str
    custody_version: str = CUSTODY_VERSION

    @property
    def software_agent(self) -> str:
        return f"{self.provider}/{self.model} via Custody {self.custody_version}"


@dataclass(frozen=True)
class CustodyAssertion:
    """Ties an asset to Custody's records. runs states the run, attachment and unsigned digest itself; the AI call
    fields are what the uploader stated (the attachment's created_by names who)."""

    run: str
    attachment: str
    kind: str
    unsigned_sha256: str
    unsigned_size_bytes: int
    ai_call: str
    ai_request_id: str
    ai_ledger_leaf_index: int | None
    signed_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": ASSERTION_SCHEMA,
            "run": self.run,
            "attachment": self.attachment,
            "kind": self.kind,
            "unsigned_sha256": self.unsigned_sha256,
            "unsigned_size_bytes": self.unsigned_size_bytes,
            "ai_call": self.ai_call,
            "ai_request_id": self.ai_request_id,
            "ai_ledger_leaf_index": self.ai_ledger_leaf_index,
            "signed_by": self.signed_by,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> CustodyAssertion:
        """Strict: every field present with its type, nothing else; CredentialsError otherwise."""
        if not isinstance(data, Mapping) or data.get("schema") != ASSERTION_SCHEMA:
            raise CredentialsError(f"the Custody assertion is not {ASSERTION_SCHEMA}")
        texts = ("run", "attachment", "kind", "unsigned_sha256", "ai_call", "ai_request_id", "signed_by")
        expected = {"schema", "unsigned_size_bytes", "ai_ledger_leaf_index", *texts}
        if set(data) != expected:
            raise CredentialsError(f"the Custody assertion has fields {sorted(data)}, not {sorted(expected)}")
        if not all(isinstance(data[name], str) for name in texts):
            raise CredentialsError("a text field of the Custody assertion is not a string")
        size, leaf = data["unsigned_size_bytes"], data["ai_ledger_leaf_index"]
        if not _is_count(size) or not (leaf is None or _is_count(leaf)):
            raise CredentialsError("unsigned_size_bytes and ai_ledger_leaf_index must be whole numbers, 0 or more")
        return CustodyAssertion(**{name: data[name] for name in expected - {"schema"}})


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Credentials:
    source_type: SourceType
    generator: Generator
    assertion: CustodyAssertion
    title: str

    def manifest_definition(self) -> dict[str, Any]:
        """The manifest as c2pa.Builder takes it."""
        return {
            "claim_generator_info": [{"name": "Custody", "version": self.generator.custody_version}],
            "title": self.title,
            "assertions": [
                {
                    "label": ACTIONS_LABEL,
                    "data": {
                        "actions": [
                            {
                                "action": CREATED,
                                "digitalSourceType": self.source_type.value,
                                "softwareAgent": {
                                    "name": self.generator.software_agent,
                                    "version": self.generator.custody_version,
                                },
                                "parameters": {
                                    "custody.provider": self.generator.provider,
                                    "custody.model": self.generator.model,
                                },
                            }
                        ]
                    },
                },
                {"label": ASSERTION_LABEL, "data": self.assertion.to_dict()},
            ],
        }
