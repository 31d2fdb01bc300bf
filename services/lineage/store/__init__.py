"""The only package that touches the lineage database, split by concern behind one facade.

- transactions.py: one write transaction per call, serialized per project, retried after a lost uniqueness race,
  ending with the ledger leaves of the records it wrote (services/lineage/ledger_records.py)
- idempotency.py: request-id replay inside the write it answers for
- types.py: the type registry (insert-only registrations)
- versions.py: creating a version, its edges and its starting state
- propagation.py: downstream staleness, in the transaction creating a version (a reference path and PostgreSQL's
  set-based one)
- reads.py: versions with their history, keyset pages, upstream states
- decisions.py: status and health changes by compare-and-set, with history
- closure.py and graph_cache.py: closure traversal on an in-memory graph kept exact by a watermark
- witness.py: peers' checkpoints lineage checked and kept (or refused)
- rows.py: row <-> domain mapping shared by the above

The store enforces atomicity and integrity only; every domain rule (who may register a type, how a new version
starts, whether a decision is allowed) is a callable the domain passes in with the call.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.common.ledger.ledger import Ledger
from services.lineage.store.closure import ClosureStore
from services.lineage.store.decisions import DecisionStore
from services.lineage.store.graph_cache import GraphCache
from services.lineage.store.propagation import Propagation, Propagator
from services.lineage.store.reads import VersionReads
from services.lineage.store.rows import Decision
from services.lineage.store.transactions import Transactions
from services.lineage.store.types import TypeStore
from services.lineage.store.versions import CreateOutcome, NewVersion, VersionStore
from services.lineage.store.witness import WitnessStore

__all__ = ["CreateOutcome", "Decision", "LineageStore", "NewVersion", "Propagation"]


class LineageStore:
    """One object for the domain to hold; each method is its concern's (see the module list above)."""

    def __init__(self, engine: sa.Engine, ledger: Ledger | None = None, propagation: Propagation | None = None) -> None:
        """`propagation`: which implementation marks staleness (propagation.py; default: the database's)."""
        self.engine = engine
        tx = Transactions(engine, ledger)
        self.dialect = tx.dialect
        self.graph_cache = GraphCache()
        self.propagator = Propagator(tx.dialect, self.graph_cache, ledger is not None, propagation)
        types, versions, reads = TypeStore(tx), VersionStore(tx, self.propagator), VersionReads(tx)
        decisions, closure = DecisionStore(tx), ClosureStore(tx, self.graph_cache)
        self.register_type = types.register_type
        self.ensure_types = types.ensure_types
        self.get_type = types.get_type
        self.type_names = types.type_names
        self.policy_types = types.policy_types
        self.policy_names = types.policy_names
        self.create_version = versions.create_version
        self.get_version = reads.get_version
        self.list_versions = reads.list_versions
        self.list_stale = reads.list_stale
        self.list_projects = reads.list_projects
        self.change_status = decisions.change_status
        self.check_status = decisions.check_status
        self.assess_health = decisions.assess_health
        self.closure_depths = closure.closure_depths
        self.closure_ids_by_cte = closure.closure_ids_by_cte
        self.node_infos = closure.node_infos
        self.witnesses = WitnessStore(tx)
