"""What an S3 failure means to a caller (services/common/outage_errors.py): not now (UNAVAILABLE, retry) for a
store that is unreachable, overloaded or failing; a refusal stays INTERNAL (a misconfiguration, not an outage)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from services.common.errors import Unavailable
from services.common.outage_errors import outage_error, outage_error_with_blob_store


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_an_unreachable_or_overloaded_blob_store_is_unavailable_with_a_retry_delay(exc: Exception) -> None:
    error = outage_error_with_blob_store(exc)
    assert isinstance(error, Unavailable) and error.reason == "BLOB_STORE_UNAVAILABLE"
    assert error.retry_after_s is not None and error.retry_after_s > 0


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("NoSuchBucket", 404), ("InvalidAccessKeyId", 403)])
def test_a_refusing_blob_store_is_no_outage(code: str, status: int) -> None:
    assert outage_error_with_blob_store(client_error(code, status)) is None


def test_an_s3_failure_raised_from_another_error_is_that_failure() -> None:
    try:
        try:
            raise client_error("SlowDown", 503)
        except ClientError as cause:
            raise RuntimeError("publishing failed") from cause
    except RuntimeError as exc:
        error = outage_error_with_blob_store(exc)
    assert isinstance(error, Unavailable)


def test_services_without_a_blob_store_leave_s3_failures_alone() -> None:
    assert outage_error(client_error("SlowDown", 503)) is None
