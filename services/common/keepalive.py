"""HTTP/2 keepalive figures shared by the server bootstrap (server.py) and the client factory (clients.py): a
client must never ping more often than servers allow. A module of its own so that clients (the CLI, every peer
call) do not import the server bootstrap and its database stack."""

from __future__ import annotations

KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Clients (ours included) may ping every 10 s; anything faster is answered with GOAWAY too_many_pings.
MIN_PING_INTERVAL_MS = 10_000
