"""What a failing dependency of a stateful service means to its caller: the database unreachable or restarting,
the disk (or the database's disk) full, the S3 blob store unreachable, overloaded or failing.

Without this, such failures reach the caller as INTERNAL, which says "a bug, do not retry", when the truth is "not
now": the service itself is healthy and recovers on its own once the database is back (the PostgreSQL pool checks
each connection before lending it, so no restart is needed) or space is freed. The call-handling interceptor asks
`outage_error` before it falls back to INTERNAL, for the services whose composition root wires it in (those that
own a database or a blob directory); nothing else in a service needs to know.

Only failures known to be transient or environmental are translated. SQLite raises OperationalError for bugs too
("no such table"), so for SQLite only its lock and full-disk messages are; everything else stays INTERNAL. For S3:
no connection, a timeout, a 5xx or a throttling answer (SlowDown) once boto3's own retries are spent; a refusal
(403, a missing bucket) is a misconfiguration and stays INTERNAL (logged in full). Only runs keeps blobs in S3, so
only runs wires `outage_error_with_blob_store`; the others wire `outage_error`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import botocore.exceptions as boto_exc
import psycopg
import sqlalchemy.exc as sa_exc

from services.common.errors import CustodyError, ResourceExhausted, Unavailable

DATABASE_RETRY_AFTER_S = 1.0
STORAGE_RETRY_AFTER_S = 30.0
BLOB_STORE_RETRY_AFTER_S = 1.0
_S3_BUSY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "RequestTimeout", "Throttling", "InternalError"})
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_BUSY = ("database is locked", "database table is locked")
_SQLITE_FULL = "database or disk is full"


def outage_error(exc: BaseException) -> CustodyError | None:
    """The status `exc` deserves when it is a database outage or a full disk (itself or what it was raised
    from); None when it is neither (the caller then answers INTERNAL)."""
    return _first_outage(exc, _database_or_disk)


def outage_error_with_blob_store(exc: BaseException) -> CustodyError | None:
    """outage_error, and an S3 blob store's outages too: for runs, the one service whose blobs may live in S3."""
    return _first_outage(exc, _database_disk_or_blob_store)


def _first_outage(exc: BaseException, classify: Callable[[BaseException], CustodyError | None]) -> CustodyError | None:
    seen: BaseException | None = exc
    for _ in range(4):  # an error re-raised `from` an outage is that outage
        if seen is None:
            return None
        found = classify(seen)
        if found is not None:
            return found
        seen = seen.__cause__
    return None


def _database_or_disk(exc: BaseException) -> CustodyError | None:
    return _database(exc) if isinstance(exc, sa_exc.SQLAlchemyError | psycopg.Error) else _disk(exc)


def _database_disk_or_blob_store(exc: BaseException) -> CustodyError | None:
    if isinstance(exc, boto_exc.BotoCoreError | boto_exc.ClientError):
        return _blob_store(exc)
    return _database_or_disk(exc)


def _database(exc: BaseException) -> CustodyError | None:
    if isinstance(exc, sa_exc.TimeoutError):  # every pooled connection busy for the pool's timeout
        return _unavailable("every database connection stayed busy")
    driver = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(driver, psycopg.errors.DiskFull):
        return _storage_full("the database's disk is full")
    if isinstance(driver, psycopg.OperationalError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return _unavailable("the database is unreachable or restarting")
    message = str(driver).lower()
    if isinstance(exc, sa_exc.OperationalError) and any(busy in message for busy in _SQLITE_BUSY):
        return _unavailable("the database stayed locked by other writers")
    if isinstance(exc, sa_exc.OperationalError) and _SQLITE_FULL in message:
        return _storage_full("the database's disk is full")
    return None


def _disk(exc: BaseException) -> CustodyError | None:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return _storage_full("the disk holding this service's files is full")
    return None


def _blob_store(exc: BaseException) -> CustodyError | None:
    if isinstance(exc, boto_exc.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status < 500 and exc.response.get("Error", {}).get("Code") not in _S3_BUSY_CODES:
            return None
        what = f"the blob store answered {status or exc.response.get('Error', {}).get('Code')}"
    elif isinstance(exc, boto_exc.ConnectionError | boto_exc.HTTPClientError):  # no connection, a timeout, a cut
        what = "the blob store is unreachable"
    else:
        return None
    return Unavailable(
        "BLOB_STORE_UNAVAILABLE",
        f"{what}; nothing of this call was kept: retry it (with the same request_id) shortly",
        retry_after_s=BLOB_STORE_RETRY_AFTER_S,
    )


def _unavailable(what: str) -> Unavailable:
    return Unavailable(
        "DATABASE_UNAVAILABLE",
        f"{what}; the call may not have taken effect: retry it (with the same request_id) shortly",
        retry_after_s=DATABASE_RETRY_AFTER_S,
    )


def _storage_full(what: str) -> ResourceExhausted:
    return ResourceExhausted(
        "STORAGE_FULL",
        f"{what}; nothing of this call was kept: retry once an operator has freed space",
        retry_after_s=STORAGE_RETRY_AFTER_S,
    )
