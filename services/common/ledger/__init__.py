"""Custody's tamper-evident ledger: one implementation shared by runs, lineage and ai_gateway.

The pure core (no database, no grpc): `merkle` (RFC 9162 trees and proofs), `note` (C2SP signed notes and
tlog checkpoints, Ed25519) and `checkpoint_log` (signed checkpoints kept outside the database).
"""
