"""The load a crash harness puts on the services while it kills them: client threads that mint runs, stream
multi-chunk attachments, create lineage versions and have another person approve them, each with its own idempotency
key, retried through kills until acknowledged. Every acknowledgement is recorded with the digest the server
returned, which is what the harness later reads back.

An operation whose answer is lost to a kill is retried with the same request_id, so a write the server committed but
never acknowledged comes back as its replay, never as a second record: the harness counts duplicates to prove it.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from bench.harness import small_run
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.clock import parse_rfc3339
from services.common.hashing import sha256_canonical

T = TypeVar("T")

# Answers a kill (or the restart after one) can give a call that may still have been committed: retry them.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)
CALL_TIMEOUT_S = 15.0
GIVE_UP_S = 120.0
CHUNK_BYTES = 64 * 1024
PROJECT = "crash"
# Reconnect quickly after a restart (gRPC's default backoff grows to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
]


@dataclass(frozen=True)
class Acked:
    """One write the server acknowledged: what it named and the digest it returned for it."""

    kind: str  # run, attachment, version, approval
    op: str
    name: str
    sha256: str
    # attachments: the sha256 of the bytes the client sent (the server's digest must equal it too)
    sent_sha256: str = ""


@dataclass
class Tally:
    """What every client did, shared by the threads."""

    acked: list[Acked] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)  # by status code
    # Writes a kill committed but kept the answer of: the retry got the original back (by kind).
    replayed: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # answers no retry can change: a bug under test
    # Attachments read back (and listed) right after their upload, while the kills go on; and what was wrong.
    reads: int = 0
    broken_reads: list[str] = field(default_factory=list)
    ops_started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, record: Acked, replayed: bool) -> None:
        with self.lock:
            self.acked.append(record)
            if replayed:
                self.replayed[record.kind] += 1

    def retried(self, code: grpc.StatusCode) -> None:
        with self.lock:
            self.retries[code.name] += 1

    def refuse(self, what: str) -> None:
        with self.lock:
            self.refused.append(what)

    def read(self, problem: str | None) -> None:
        with self.lock:
            self.reads += 1
            if problem is not None:
                self.broken_reads.append(problem)

    def started(self) -> None:
        with self.lock:
            self.ops_started += 1


class Refused(Exception):
    """A call failed with an answer that retrying cannot change."""


def approval_digest(status: lineage_pb2.StatusRecord) -> str:
    """Digest of an approval as the server reports it (status, revision, time, actor, rationale, ledger entry)."""
    return sha256_canonical(MessageToDict(status, preserving_proto_field_name=True))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def run_input(op: str) -> runs_pb2.RunInput:
    """A small run whose meta names the client operation that minted it (the checks count mints per operation)."""
    return small_run("crash", op, meta={"crash_op": op})


def upload_messages(header: runs_pb2.AttachmentHeader, data: bytes) -> Iterator[runs_pb2.UploadAttachmentRequest]:
    yield runs_pb2.UploadAttachmentRequest(header=header)
    for offset in range(0, len(data), CHUNK_BYTES):
        yield runs_pb2.UploadAttachmentRequest(chunk=data[offset : offset + CHUNK_BYTES])


def version_request(op: str) -> lineage_pb2.CreateVersionRequest:
    data = Struct()
    data.update({"client": op, "objectives": ["survive a SIGKILL"]})
    return lineage_pb2.CreateVersionRequest(
        parent=f"projects/{PROJECT}/artifacts/intake/{op}",
        data=data,
        metadata=lineage_pb2.VersionMetadata(
            intent="crash harness",
            rationale="acknowledged writes survive",
            confidence=0.9,
            source=lineage_pb2.SOURCE_HUMAN,
        ),
        request_id=f"{op}-version",
    )


class Client:
    """One client: its own channels, its own random payloads; runs operations until told to stop."""

    def __init__(
        self,
        index: int,
        addresses: dict[str, str],
        operator_token: str,
        reviewer_token: str,
        tally: Tally,
        seed: int,
    ) -> None:
        self.index = index
        self._runs_channel = channel(addresses["runs"])
        self._lineage_channel = channel(addresses["lineage"])
        self._runs = runs_pb2_grpc.RunsServiceStub(self._runs_channel)
        self._lineage = lineage_pb2_grpc.LineageServiceStub(self._lineage_channel)
        self._operator = bearer(operator_token)
        self._reviewer = bearer(reviewer_token)
        self._tally = tally
        self._random = random.Random(seed * 1000 + index)
        self._attempt_started = datetime.now(UTC)

    def run(self, stop: threading.Event) -> None:
        """Whole operations (run, attachment, version, approval) until `stop`; the one under way is finished."""
        number = 0
        try:
            while not stop.is_set():
                self._tally.started()
                try:
                    self.operation(f"c{self.index}-{number}")
                except Refused as exc:
                    self._tally.refuse(str(exc))
                number += 1
        finally:
            self._runs_channel.close()
            self._lineage_channel.close()

    def operation(self, op: str) -> None:
        run = self._call(
            f"{op} CreateRun",
            lambda: self._runs.CreateRun(
                runs_pb2.CreateRunRequest(run=run_input(op), request_id=f"{op}-run"),
                metadata=self._operator,
                timeout=CALL_TIMEOUT_S,
            ),
        )
        self._tally.ack(Acked("run", op, run.name, run.artifact_sha256), self._earlier(run.create_time.ToDatetime(UTC)))
        data = self._random.randbytes(self._random.randint(2 * CHUNK_BYTES + 1, 6 * CHUNK_BYTES))
        header = runs_pb2.AttachmentHeader(run=run.name, kind="other", filename=f"{op}.bin", request_id=f"{op}-att")
        attachment = self._call(
            f"{op} UploadAttachment",
            lambda: self._runs.UploadAttachment(
                upload_messages(header, data), metadata=self._operator, timeout=CALL_TIMEOUT_S
            ),
        )
        sent = hashlib.sha256(data).hexdigest()
        replayed = self._earlier(attachment.create_time.ToDatetime(UTC))
        self._tally.ack(Acked("attachment", op, attachment.name, attachment.digest.sha256, sent), replayed)
        self._tally.read(self._read_now(op, run.name, attachment.name, sent))
        created = self._call(
            f"{op} CreateVersion",
            lambda: self._lineage.CreateVersion(version_request(op), metadata=self._operator, timeout=CALL_TIMEOUT_S),
        )
        version = created.version
        self._tally.ack(Acked("version", op, version.name, version.snapshot_sha256), created.replayed)
        approved = self._call(
            f"{op} Approve",
            lambda: self._lineage.Approve(
                lineage_pb2.ApproveRequest(name=version.name, rationale="survives kills", request_id=f"{op}-approve"),
                metadata=self._reviewer,
                timeout=CALL_TIMEOUT_S,
            ),
        )
        replayed = self._earlier(parse_rfc3339(approved.status.update_time))
        self._tally.ack(Acked("approval", op, version.name, approval_digest(approved.status)), replayed)

    def _read_now(self, op: str, run: str, name: str, sent: str) -> str | None:
        """What is wrong with the attachment as a reader sees it at once, kills or not: it must be the run's only
        attachment and read back as the bytes sent (a partial or missing blob answers DATA_LOSS, never retried)."""
        listed = self._call(
            f"{op} ListAttachments",
            lambda: self._runs.ListAttachments(
                runs_pb2.ListAttachmentsRequest(run=run), metadata=self._operator, timeout=CALL_TIMEOUT_S
            ),
        )
        if [a.name for a in listed.attachments] != [name]:
            return f"{op}: {run} lists {[a.name for a in listed.attachments]}, not only {name}"
        try:
            read = self._call(f"{op} ReadAttachment", lambda: self._read_all(name))
        except Refused as exc:
            return str(exc)
        return None if read == sent else f"{op}: {name} reads back as {read}, not the {sent} sent"

    def _read_all(self, name: str) -> str:
        digest = hashlib.sha256()
        request = runs_pb2.ReadAttachmentRequest(name=name)
        for message in self._runs.ReadAttachment(request, metadata=self._operator, timeout=CALL_TIMEOUT_S):
            digest.update(message.chunk)
        return digest.hexdigest()

    def _earlier(self, written: datetime) -> bool:
        """Whether a record answered by the last attempt was written before that attempt began: an earlier attempt
        committed it and a kill took the answer (same machine, same clock)."""
        return written < self._attempt_started

    def _call(self, what: str, invoke: Callable[[], T]) -> T:
        deadline = time.monotonic() + GIVE_UP_S
        pause = 0.05
        while True:
            self._attempt_started = datetime.now(UTC)
            try:
                return invoke()
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in RETRYABLE or time.monotonic() > deadline:
                    raise Refused(f"{what}: {code.name} {exc.details()}") from exc
                self._tally.retried(code)
                time.sleep(pause)
                pause = min(0.5, pause * 2)
