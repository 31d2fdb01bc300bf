"""Offline evidence bundles: in-toto Statements in DSSE envelopes (ECDSA P-256, cosign-compatible) with the
ledger inclusion proofs and signed checkpoints that place each record the statement names in its authority's
ledger. No grpc and no database here: the exporter gathers the inputs, `bundle.write_bundle` writes them, and
`verify.verify_bundle` checks a bundle from public keys alone.

Modules: `dsse` (envelopes), `keys` (the evidence key), `statement` (in-toto v1 builders), `records` and
`anchors` (which ledger records a statement relies on), `bundle` (the directory layout), `verify`.
"""
