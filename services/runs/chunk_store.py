"""Blob bytes in the runs database (table blob_chunks), for the database blob backend: the one module beside
store.py that touches the runs database.

A blob is its chunks in order from seq 0; chunk 0 always exists (it marks the blob as stored, even when empty),
and all chunks are written in one transaction, so a blob is complete or absent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.runs import tables


class BlobChunks:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def exists(self, sha256: str) -> bool:
        with self._engine.connect() as connection:
            return self._stored(connection, sha256)

    def add(self, sha256: str, chunks: Iterable[bytes]) -> bool:
        """Stores the chunks under the digest unless it is stored already (then `chunks` is not read): a
        concurrent writer of the same bytes loses the race harmlessly. True when this call stored them."""
        try:
            with self._engine.begin() as connection:
                if self._stored(connection, sha256):
                    return False
                seq = -1
                for seq, block in enumerate(chunks):
                    connection.execute(tables.blob_chunks.insert(), {"sha256": sha256, "seq": seq, "data": block})
                if seq < 0:  # no bytes: chunk 0 still marks the blob as stored
                    connection.execute(tables.blob_chunks.insert(), {"sha256": sha256, "seq": 0, "data": b""})
            return True
        except IntegrityError:
            if not self.exists(sha256):
                raise
            return False

    def read(self, sha256: str) -> Iterator[bytes]:
        """One chunk per query, so a 64 MiB blob never sits in memory whole."""
        seq = 0
        with self._engine.connect() as connection:
            while True:
                row = connection.execute(
                    sa.select(tables.blob_chunks.c.data).where(
                        tables.blob_chunks.c.sha256 == sha256, tables.blob_chunks.c.seq == seq
                    )
                ).first()
                if row is None:
                    return
                if row.data:
                    yield bytes(row.data)
                seq += 1

    @staticmethod
    def _stored(connection: sa.Connection, sha256: str) -> bool:
        query = sa.select(tables.blob_chunks.c.seq).where(
            tables.blob_chunks.c.sha256 == sha256, tables.blob_chunks.c.seq == 0
        )
        return connection.execute(query).first() is not None
