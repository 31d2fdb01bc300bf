"""Lineage domain logic: pure (no grpc, no database). The store persists; the servicer translates."""
