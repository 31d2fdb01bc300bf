"""Signs an authority's checkpoints and appends them to its checkpoint log, outside the database.

A new checkpoint is signed once the tree has grown by `every_leaves` leaves, or `every_s` seconds after the
first leaf the last checkpoint does not cover, so no record waits longer than that for a signed root. Before
signing, the tree's root at the size of the last logged checkpoint must equal that checkpoint's root: the new
checkpoint then extends the old one, and two inconsistent checkpoints are never signed.

Replicas of an authority share its database, key and checkpoint log, and each runs a checkpointer. Signing is
deterministic (Ed25519, and the body is origin, size and root), so two replicas signing one size log the same
note, and the log's hard link refuses a different one. A replica whose tree has reached a size another replica
already logged adopts that checkpoint (checked against its key and its own tree) instead of waiting to sign its
own, so every replica soon answers with the latest checkpoint of the shared tree. When it does not (the
database was rewritten, or lost leaves), the checkpointer stops signing and raises the alarm every time it is
asked, in its log and through `alarm`, which the ledger's RPCs report as DATA_LOSS. The alarm stays raised until
the process restarts: an inconsistency once seen is for a person to investigate, not something to clear itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.ledger.checkpoint_log import CheckpointConflict, CheckpointLog
from services.common.ledger.note import Checkpoint, NoteError, NoteSigner, NoteVerifier, parse_checkpoint
from services.common.ledger.tree import LedgerGap, LedgerTree

log = logging.getLogger("custody.ledger")


@dataclass(frozen=True)
class Signed:
    """A checkpoint as logged: the parsed body and the signed note text."""

    checkpoint: Checkpoint
    note: str


def parse_signed(note: str) -> Signed:
    body = note.split("\n\n", 1)[0] + "\n"
    return Signed(parse_checkpoint(body), note)


class Checkpointer:
    def __init__(
        self,
        tree: LedgerTree,
        signer: NoteSigner,
        checkpoints: CheckpointLog,
        *,
        every_leaves: int,
        every_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tree = tree
        self.signer = signer
        self.checkpoints = checkpoints
        self.origin = signer.name
        self._every_leaves = every_leaves
        self._every_s = every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending_since: float | None = None
        self.alarm: str | None = None
        latest = checkpoints.latest()
        self._latest: Signed | None = None if latest is None else parse_signed(latest[1])

    @property
    def latest(self) -> Signed | None:
        return self._latest

    def tick(self, *, force: bool = False) -> Signed | None:
        """Catches the tree up and signs a checkpoint if one is due (or `force`d); returns the latest one."""
        with self._lock:
            if self.alarm is not None:
                return self._raise_alarm(self.alarm)
            try:
                size = self.tree.catch_up()
            except LedgerGap as gap:
                return self._raise_alarm(str(gap))
            latest = self._latest
            if latest is not None:
                problem = self._inconsistency(latest.checkpoint, size)
                if problem is not None:
                    return self._raise_alarm(problem)
            if latest is not None and size == latest.checkpoint.size:
                self._pending_since = None
                return latest
            logged = self.checkpoints.get(size)
            if logged is not None:  # another replica (one key, one log, one database) signed this tree already
                return self._adopt(logged, size)
            now = self._monotonic()
            if self._pending_since is None:
                self._pending_since = now
            grown = size - (0 if latest is None else latest.checkpoint.size)
            due = latest is None or force or grown >= self._every_leaves or now - self._pending_since >= self._every_s
            if not due:
                return latest
            return self._sign(size)

    def _inconsistency(self, logged: Checkpoint, size: int) -> str | None:
        if logged.origin != self.origin:
            return f"the checkpoint log holds checkpoints of {logged.origin!r}, not of {self.origin!r}"
        if size < logged.size:
            return f"the database holds {size} leaves but a checkpoint of {logged.size} leaves was signed"
        if self.tree.root(logged.size) != logged.root:
            return (
                f"the database's first {logged.size} leaves no longer hash to the root signed in checkpoint "
                f"{logged.size}: the ledger was rewritten out of band"
            )
        return None

    def _adopt(self, note: str, size: int) -> Signed | None:
        """Takes a checkpoint another signer of this origin logged at the current size as the latest, once it is
        signed with this key and its root is this tree's: replicas then hand out what any of them signed."""
        try:
            checkpoint = NoteVerifier(self.signer.vkey).verify_checkpoint(note)
        except NoteError as exc:
            return self._raise_alarm(f"checkpoint {size} in the checkpoint log is not signed with this key: {exc}")
        problem = self._inconsistency(checkpoint, size)
        if problem is not None:
            return self._raise_alarm(problem)
        self._latest = Signed(checkpoint, note)
        self._pending_since = None
        return self._latest

    def _sign(self, size: int) -> Signed | None:
        checkpoint = Checkpoint(self.origin, size, self.tree.root(size))
        note = self.signer.sign(checkpoint.body())
        try:
            self.checkpoints.append(size, note)
        except CheckpointConflict as conflict:  # another signer of this origin logged a different tree
            return self._raise_alarm(str(conflict))
        self._latest = Signed(checkpoint, note)
        self._pending_since = None
        return self._latest

    def _raise_alarm(self, problem: str) -> Signed | None:
        self.alarm = problem
        log.error("ledger %s: refusing to sign checkpoints: %s", self.origin, problem)
        return self._latest

    def due_in_s(self) -> float:
        """Seconds until the next checkpoint could be due, for RetryInfo."""
        return self._every_s
