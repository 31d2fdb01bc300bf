"""Evidence bundles: one built on real ledgers verifies, offline, with our verifier and with securesystemslib;
and every single change an attacker could make to it is rejected, for the reason it should be.

Each rejection test asserts the exact set of checks that fail, so a bundle rejected for some other reason (a
mistake in the test, or a verifier that fails everything) does not pass.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from services.common.evidence import bundle, dsse, statement
from services.common.evidence.keys import EvidencePublicKey, EvidenceSigner
from services.common.evidence.verify import Failure, verify_bundle
from services.common.hashing import canonical_json
from services.common.ledger.note import generate_note_key
from tests.unit.evidence import samples
from tests.unit.evidence.ledgers import World, approval_records, run_records, write_run_bundle


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def run_bundle(tmp_path: Path, world: World) -> Path:
    directory = tmp_path / "bundle"
    write_run_bundle(directory, world)
    return directory


def _verify(directory: Path, world: World) -> list[Failure]:
    return verify_bundle(directory, [world.signer.public_key], world.vkeys)


def _checks(failures: list[Failure]) -> set[str]:
    return {f.check for f in failures}


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def _edit_json(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_envelope(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    _edit_json(directory / bundle.STATEMENT_FILE, change)


def _edit_record(directory: Path, index: int, change: Callable[[dict[str, Any]], None]) -> None:
    _edit_json(directory / bundle.LEDGER_FILE, lambda data: change(data["records"][index]))


# The bundle as written


def test_a_bundle_built_on_real_ledgers_verifies(run_bundle: Path, world: World) -> None:
    assert _verify(run_bundle, world) == []


def test_an_approval_bundle_verifies(tmp_path: Path, world: World) -> None:
    claims = statement.approval_summary(samples.APPROVAL)
    bundle.write_bundle(tmp_path / "b", claims, approval_records(world), world.signer)
    assert _verify(tmp_path / "b", world) == []


def test_securesystemslib_verifies_the_bundles_envelope_with_the_public_key_pem(run_bundle: Path) -> None:
    envelope = SslibEnvelope.from_dict(json.loads((run_bundle / bundle.STATEMENT_FILE).read_text()))
    pem = (run_bundle / bundle.PUBLIC_KEY_FILE).read_bytes()
    key = SSlibKey.from_crypto(load_pem_public_key(pem), keyid=EvidencePublicKey.from_pem(pem).keyid)
    assert list(envelope.verify([key], 1)) == [key.keyid]
    assert envelope.payload_type == "application/vnd.in-toto+json"
    assert json.loads(envelope.payload) == statement.run_provenance(samples.RUN)


def test_the_bundle_reads_back_as_written(run_bundle: Path, world: World) -> None:
    read = bundle.read_bundle(run_bundle)
    assert json.loads(read.envelope.payload) == statement.run_provenance(samples.RUN)
    assert [r.record_name for r in read.ledger.records] == [
        "runs/r1",
        "runs/r1/attachments/a1",
        "runs/r1/attachments/a2",
        samples.UPSTREAM.name,
        "calls/c1",
    ]
    assert read.ledger.verifier_keys[world.runs.origin] == world.runs.vkey
    assert set(read.subject_files) == {
        samples.sha(samples.ARTIFACT),
        samples.sha(samples.SVG),
        samples.sha(samples.GCODE),
    }
    ledger = json.loads((run_bundle / bundle.LEDGER_FILE).read_text())
    assert all(len(h) == 64 for record in ledger["records"] for h in record["inclusion_proof"])  # hex


def test_writing_refuses_a_non_empty_directory_and_a_file_that_is_no_subject(tmp_path: Path, world: World) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "stale").write_text("x")
    claims = statement.run_provenance(samples.RUN)
    with pytest.raises(bundle.BundleError, match="not empty"):
        bundle.write_bundle(tmp_path / "full", claims, [], world.signer)
    with pytest.raises(ValueError, match="not subjects"):
        bundle.write_bundle(tmp_path / "new", claims, [], world.signer, subject_files=[b"unrelated"])


# The envelope


def test_a_flipped_payload_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(envelope: dict[str, Any]) -> None:
        payload = base64.b64decode(envelope["payload"])
        envelope["payload"] = base64.b64encode(_flip(payload, payload.index(b"cnc-router"))).decode()

    _edit_envelope(run_bundle, flip)
    assert _checks(_verify(run_bundle, world)) == {"dsse.signature"}


def test_a_flipped_payload_type_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(envelope: dict[str, Any]) -> None:
        envelope["payloadType"] = _flip(envelope["payloadType"].encode(), 3).decode()

    _edit_envelope(run_bundle, flip)
    assert _checks(_verify(run_bundle, world)) == {"dsse.signature", "dsse.payload_type"}


@pytest.mark.parametrize("at", [10, -1], ids=["inside-r", "last-byte-of-s"])
def test_a_flipped_signature_byte_is_rejected(run_bundle: Path, world: World, at: int) -> None:
    def flip(envelope: dict[str, Any]) -> None:
        sig = base64.b64decode(envelope["signatures"][0]["sig"])
        envelope["signatures"][0]["sig"] = base64.b64encode(_flip(sig, at)).decode()

    _edit_envelope(run_bundle, flip)
    assert _checks(_verify(run_bundle, world)) == {"dsse.signature"}


def test_a_bundle_signed_by_a_key_that_is_not_trusted_is_rejected(run_bundle: Path, world: World) -> None:
    failures = verify_bundle(run_bundle, [EvidenceSigner.generate().public_key], world.vkeys)
    assert _checks(failures) == {"dsse.signature"}
    assert failures[0].where == "statement.dsse.json"


def test_the_bundles_own_public_key_is_not_trusted(run_bundle: Path, world: World) -> None:
    """Re-signing with another key and shipping that key in the bundle does not make it verify."""
    forger = EvidenceSigner.generate()
    read = bundle.read_envelope(run_bundle)
    (run_bundle / bundle.STATEMENT_FILE).write_text(dsse.sign(read.payload_type, read.payload, forger).dumps())
    (run_bundle / bundle.PUBLIC_KEY_FILE).write_text(forger.public_key.pem)
    assert _checks(_verify(run_bundle, world)) == {"dsse.signature"}


def test_a_missing_envelope_is_named(run_bundle: Path, world: World) -> None:
    (run_bundle / bundle.STATEMENT_FILE).unlink()
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [("statement.dsse.json", "dsse.format")]
    assert "statement.dsse.json is missing" in failures[0].detail


# The ledger records


def test_a_flipped_proof_hash_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(record: dict[str, Any]) -> None:
        record["inclusion_proof"][1] = _flip(bytes.fromhex(record["inclusion_proof"][1]), 0).hex()

    _edit_record(run_bundle, 0, flip)
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [("ledger.json records[0] (runs run runs/r1)", "ledger.inclusion")]


def test_a_flipped_leaf_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(record: dict[str, Any]) -> None:
        leaf = record["leaf"].encode()
        record["leaf"] = _flip(leaf, leaf.index(b"service:runs")).decode()  # still canonical JSON, another principal

    _edit_record(run_bundle, 1, flip)
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [
        ("ledger.json records[1] (runs attachment runs/r1/attachments/a1)", "ledger.inclusion")
    ]


def test_a_flipped_checkpoint_body_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(record: dict[str, Any]) -> None:
        note = record["checkpoint"].encode()
        record["checkpoint"] = _flip(note, note.index(b"\n") + 1).decode()  # the size line

    _edit_record(run_bundle, 3, flip)
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [
        (f"ledger.json records[3] (lineage version {samples.UPSTREAM.name})", "ledger.checkpoint_signature")
    ]


def test_a_flipped_checkpoint_signature_byte_is_rejected(run_bundle: Path, world: World) -> None:
    def flip(record: dict[str, Any]) -> None:
        body, _, signature_line = record["checkpoint"].partition("\n\n")
        dash, name, signature = signature_line.rstrip("\n").split(" ")
        raw = _flip(base64.b64decode(signature), 10)  # past the 4-byte key hash: the Ed25519 signature itself
        record["checkpoint"] = f"{body}\n\n{dash} {name} {base64.b64encode(raw).decode()}\n"

    _edit_record(run_bundle, 4, flip)
    assert _checks(_verify(run_bundle, world)) == {"ledger.checkpoint_signature"}


def test_checkpoints_signed_by_an_untrusted_note_key_are_rejected(run_bundle: Path, world: World) -> None:
    _, impostor = generate_note_key(world.lineage.origin)  # same origin name, another key
    failures = verify_bundle(run_bundle, [world.signer.public_key], [world.runs.vkey, impostor, world.gateway.vkey])
    assert [(f.where, f.check) for f in failures] == [
        (f"ledger.json records[3] (lineage version {samples.UPSTREAM.name})", "ledger.checkpoint_signature")
    ]


def test_a_record_of_an_origin_with_no_trusted_key_is_rejected(run_bundle: Path, world: World) -> None:
    failures = verify_bundle(run_bundle, [world.signer.public_key], [world.runs.vkey, world.lineage.vkey])
    assert [(f.where, f.check) for f in failures] == [
        ("ledger.json records[4] (ai_gateway call calls/c1)", "ledger.untrusted_origin")
    ]


def test_a_checkpoint_of_another_size_is_rejected(run_bundle: Path, world: World) -> None:
    world.runs.append("run", "runs/later", {"artifact_sha256": samples.sha(b"later")})
    later = world.runs.checkpoint(len(world.runs.leaves))
    _edit_record(run_bundle, 0, lambda record: record.update(checkpoint=later))
    assert _checks(_verify(run_bundle, world)) == {"ledger.checkpoint_size"}


def test_a_leaf_whose_digest_is_not_the_subjects_is_rejected(tmp_path: Path, world: World) -> None:
    directory = tmp_path / "b"
    write_run_bundle(directory, world, run_records(world, attachment_sha256=samples.sha(b"other bytes")))
    failures = _verify(directory, world)
    assert [(f.where, f.check) for f in failures] == [
        ("statement.dsse.json subject[1]", "ledger.claim"),
        ("statement.dsse.json subject[2]", "ledger.claim"),
    ]
    assert "digests.sha256" in failures[0].detail


@pytest.mark.parametrize(
    ("drop", "where"),
    [
        (0, "subject[0]"),
        (2, "subject[2]"),
        (3, "predicate.buildDefinition.resolvedDependencies[0]"),
        (4, "predicate.buildDefinition.resolvedDependencies[1]"),
    ],
)
def test_a_missing_ledger_record_is_rejected(tmp_path: Path, world: World, drop: int, where: str) -> None:
    ledger_records = run_records(world)
    del ledger_records[drop]
    write_run_bundle(tmp_path / "b", world, ledger_records)
    failures = _verify(tmp_path / "b", world)
    assert [(f.where, f.check) for f in failures] == [(f"statement.dsse.json {where}", "ledger.missing_record")]


def test_a_record_vouched_for_by_another_authoritys_ledger_is_rejected(tmp_path: Path, world: World) -> None:
    """lineage's checkpoint cannot stand for a run: only the runs ledger is an authority for runs."""
    ledger_records = run_records(world)
    index = world.lineage.append("run", samples.RUN.name, {"artifact_sha256": samples.RUN.artifact_sha256})
    ledger_records[0] = world.lineage.record(index)
    write_run_bundle(tmp_path / "b", world, ledger_records)
    assert _checks(_verify(tmp_path / "b", world)) == {"ledger.origin", "ledger.missing_record"}


def test_an_approval_recorded_for_another_reviewer_is_rejected(tmp_path: Path, world: World) -> None:
    claims = statement.approval_summary(samples.APPROVAL)
    bundle.write_bundle(tmp_path / "b", claims, approval_records(world, reviewer="human:mallory"), world.signer)
    failures = _verify(tmp_path / "b", world)
    assert [f.check for f in failures] == ["ledger.claim"]
    assert "principal human:alice" in failures[0].detail and "human:mallory" in failures[0].detail


def test_an_approval_checked_against_another_type_definition_is_rejected(tmp_path: Path, world: World) -> None:
    """The policy is the type registration the approval was checked against: its digest is in lineage's ledger."""
    claims = statement.approval_summary(dataclasses.replace(samples.APPROVAL, policy_sha256=samples.sha(b"lax")))
    bundle.write_bundle(tmp_path / "b", claims, approval_records(world), world.signer)
    failures = _verify(tmp_path / "b", world)
    assert [(f.where, f.check) for f in failures] == [("statement.dsse.json predicate.policy", "ledger.claim")]
    assert "digests.definition_sha256" in failures[0].detail


def test_a_malformed_ledger_file_is_named(run_bundle: Path, world: World) -> None:
    _edit_record(run_bundle, 2, lambda record: record.update(tree_size="8"))
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [("ledger.json", "ledger.format")]
    assert "records[2]: tree_size" in failures[0].detail


# The subject files


def test_a_subject_file_whose_bytes_changed_is_rejected(run_bundle: Path, world: World) -> None:
    path = run_bundle / bundle.SUBJECTS_DIR / samples.sha(samples.SVG)
    path.write_bytes(_flip(path.read_bytes(), 1))
    failures = _verify(run_bundle, world)
    assert [(f.where, f.check) for f in failures] == [(f"subjects/{samples.sha(samples.SVG)}", "subject.digest")]


def test_a_subject_file_that_is_no_subject_is_rejected(run_bundle: Path, world: World) -> None:
    extra = b"not in the statement"
    (run_bundle / bundle.SUBJECTS_DIR / hashlib.sha256(extra).hexdigest()).write_bytes(extra)
    assert _checks(_verify(run_bundle, world)) == {"subject.unknown"}


def test_an_origin_may_have_several_trusted_note_keys(run_bundle: Path, world: World) -> None:
    _, retired = generate_note_key(world.lineage.origin)
    keys = [world.runs.vkey, retired, world.lineage.vkey, world.gateway.vkey]  # the retired one is tried first
    assert verify_bundle(run_bundle, [world.signer.public_key], keys) == []


def test_records_the_statement_does_not_name_are_still_proven(tmp_path: Path, world: World) -> None:
    """Extra records (here a blob, whose leaf has no principal or request id) verify like the others."""
    ledger_records = run_records(world)
    blob = world.runs.append(
        "blob",
        f"blobs/{samples.sha(samples.SVG)}",
        {"sha256": samples.sha(samples.SVG)},
        principal=None,
        request_id=None,
    )
    good = world.runs.record(blob)
    write_run_bundle(tmp_path / "good", world, [*ledger_records, good])
    assert _verify(tmp_path / "good", world) == []
    bad = dataclasses.replace(good, inclusion_proof=good.inclusion_proof[::-1])
    write_run_bundle(tmp_path / "bad", world, [*ledger_records, bad])
    assert _checks(_verify(tmp_path / "bad", world)) == {"ledger.inclusion"}


def test_a_leaf_with_a_field_leaves_py_does_not_write_is_rejected(run_bundle: Path, world: World) -> None:
    def add(record: dict[str, Any]) -> None:
        leaf = json.loads(record["leaf"]) | {"note": "unhashed?"}
        record["leaf"] = canonical_json(leaf).decode()

    _edit_record(run_bundle, 2, add)
    assert _checks(_verify(run_bundle, world)) == {"ledger.leaf_format", "ledger.inclusion", "ledger.missing_record"}
