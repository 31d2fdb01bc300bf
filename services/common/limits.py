"""Limits a contract states, kept here so the service that enforces one and every client that must stay within it
read the same number."""

from __future__ import annotations

# runs' attachment uploads: at most 1 MiB of bytes per stream message (protos/custody/runs/v1/runs.proto, chunk).
CHUNK_LIMIT_BYTES = 1024 * 1024
# ai_gateway's GenerateImage: at most this many images per call (protos/custody/ai_gateway/v1/gateway.proto, count).
MAX_IMAGES_PER_CALL = 4
