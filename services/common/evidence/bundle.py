"""The evidence bundle: a directory anyone can check offline with the public keys alone.

    DIR/statement.dsse.json   the in-toto Statement v1 in a DSSE envelope (cosign's --signature file)
    DIR/evidence.pub          the evidence public key (PEM), for convenience only: a verifier must get the key it
                              trusts from elsewhere, or anyone could sign a bundle with a key of their own
    DIR/ledger.json           the ledger records the statement relies on, each with its proof (below)
    DIR/subjects/<sha256>     optionally, the bytes of subjects, named by their lowercase hex sha256

ledger.json is {"format": LEDGER_FORMAT, "records": [...], "verifier_keys": {origin: note verifier key}}, each
record {"service", "origin", "kind", "record_name", "leaf", "leaf_index", "tree_size", "inclusion_proof",
"checkpoint"}: `leaf` is the leaf's exact canonical JSON text (its hash is SHA256(0x00||UTF-8 of that text)),
`inclusion_proof` the RFC 9162 audit path as lowercase hex hashes, leaf to root, and `checkpoint` the signed
C2SP checkpoint note of the tree of `tree_size` leaves. `verifier_keys` too is for convenience only.

One offline check: `cosign verify-blob-attestation --key evidence.pub --signature statement.dsse.json --type
<predicateType> --insecure-ignore-tlog subjects/<sha256>` checks the envelope and that the blob is a subject;
`custody evidence verify DIR` checks the envelope and every ledger proof.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.evidence import dsse, statement
from services.common.evidence.keys import EvidenceSigner
from services.common.hashing import SHA256_HEX

STATEMENT_FILE = "statement.dsse.json"
PUBLIC_KEY_FILE = "evidence.pub"
LEDGER_FILE = "ledger.json"
SUBJECTS_DIR = "subjects"
LEDGER_FORMAT = "https://custody.dev/evidence/ledger/v1"


class BundleError(ValueError):
    """A bundle file that is missing or malformed; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class LedgerRecord:
    service: str
    origin: str
    kind: str
    record_name: str
    leaf: str
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str

    def label(self) -> str:
        return f"{self.service} {self.kind} {self.record_name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "origin": self.origin,
            "kind": self.kind,
            "record_name": self.record_name,
            "leaf": self.leaf,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "inclusion_proof": [h.hex() for h in self.inclusion_proof],
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class Ledger:
    records: tuple[LedgerRecord, ...]
    verifier_keys: dict[str, str]


@dataclass(frozen=True)
class Bundle:
    envelope: dsse.Envelope
    ledger: Ledger
    subject_files: dict[str, bytes]


def write_bundle(
    directory: Path,
    claims: dict[str, Any],
    ledger_records: Sequence[LedgerRecord],
    signer: EvidenceSigner,
    *,
    subject_files: Sequence[bytes] = (),
    verifier_keys: Mapping[str, str] | None = None,
) -> dsse.Envelope:
    """Signs `claims` (an in-toto statement) and writes the bundle into `directory`, which must be empty or
    absent (stale files from another export would not verify). Each subject file must hash to a subject."""
    found = statement.problems(claims)
    if found:
        raise ValueError(f"not an in-toto Statement v1: {'; '.join(found)}")
    digests = {s["digest"]["sha256"] for s in claims["subject"]}
    named = {hashlib.sha256(data).hexdigest(): data for data in subject_files}
    if strays := sorted(set(named) - digests):
        raise ValueError(f"subject files {', '.join(strays)} are not subjects of the statement")
    if directory.exists() and any(directory.iterdir()):
        raise BundleError(f"{directory} is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, statement.payload(claims), signer)
    (directory / STATEMENT_FILE).write_text(envelope.dumps(), encoding="utf-8")
    (directory / PUBLIC_KEY_FILE).write_text(signer.public_key.pem, encoding="ascii")
    ledger = {
        "format": LEDGER_FORMAT,
        "records": [record.to_json() for record in ledger_records],
        "verifier_keys": dict(verifier_keys or {}),
    }
    (directory / LEDGER_FILE).write_text(json.dumps(ledger, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if named:
        (directory / SUBJECTS_DIR).mkdir()
        for digest, data in named.items():
            (directory / SUBJECTS_DIR / digest).write_bytes(data)
    return envelope


def read_bundle(directory: Path) -> Bundle:
    """The whole bundle; raises BundleError (or dsse.EnvelopeError) for the first missing or malformed file."""
    return Bundle(read_envelope(directory), read_ledger(directory), read_subject_files(directory))


def read_envelope(directory: Path) -> dsse.Envelope:
    return dsse.parse(_read(directory / STATEMENT_FILE))


def read_ledger(directory: Path) -> Ledger:
    path = directory / LEDGER_FILE
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{LEDGER_FILE} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT:
        raise BundleError(f"{LEDGER_FILE} is not a ledger file of format {LEDGER_FORMAT}")
    raw_records = data.get("records")
    keys = data.get("verifier_keys", {})
    if not isinstance(raw_records, list):
        raise BundleError(f"{LEDGER_FILE}: records is not a list")
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise BundleError(f"{LEDGER_FILE}: verifier_keys is not a map of strings")
    records = tuple(_record(raw, index) for index, raw in enumerate(raw_records))
    return Ledger(records, dict(keys))


def read_subject_files(directory: Path) -> dict[str, bytes]:
    """Every file under subjects/, by file name (a sha256 when the bundle is sound; the verifier checks)."""
    folder = directory / SUBJECTS_DIR
    if not folder.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def _record(raw: Any, index: int) -> LedgerRecord:
    where = f"{LEDGER_FILE} records[{index}]"
    if not isinstance(raw, dict):
        raise BundleError(f"{where} is not an object")
    texts = {}
    for key in ("service", "origin", "kind", "record_name", "leaf", "checkpoint"):
        if not isinstance(raw.get(key), str):
            raise BundleError(f"{where}: {key} is missing or not a string")
        texts[key] = raw[key]
    numbers = {}
    for key in ("leaf_index", "tree_size"):
        value = raw.get(key)
        if type(value) is not int or value < 0:
            raise BundleError(f"{where}: {key} is missing or not a non-negative integer")
        numbers[key] = value
    proof = raw.get("inclusion_proof")
    if not isinstance(proof, list) or not all(isinstance(h, str) and SHA256_HEX.match(h) for h in proof):
        raise BundleError(f"{where}: inclusion_proof is not a list of lowercase hex sha256 hashes")
    return LedgerRecord(
        service=texts["service"],
        origin=texts["origin"],
        kind=texts["kind"],
        record_name=texts["record_name"],
        leaf=texts["leaf"],
        leaf_index=numbers["leaf_index"],
        tree_size=numbers["tree_size"],
        inclusion_proof=tuple(bytes.fromhex(h) for h in proof),
        checkpoint=texts["checkpoint"],
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path.name} is missing") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path.name} is not UTF-8 text") from None
