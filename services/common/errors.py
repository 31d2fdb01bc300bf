"""Typed domain errors. Domain code raises these; one interceptor turns them into gRPC statuses.

Each error carries a machine-readable reason (UPPER_SNAKE, becomes ErrorInfo.reason), a message a person can act
on, and optionally field violations (BadRequest) and a retry delay (RetryInfo). No grpc import here on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """The gRPC status codes Custody raises on purpose (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    DATA_LOSS = "DATA_LOSS"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field, as google.rpc.BadRequest.FieldViolation: `field` is a path such as `spec.shapes[2].radius`."""

    field: str
    description: str


class CustodyError(Exception):
    """Base of every error that is meant to reach a caller."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(CustodyError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(CustodyError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(CustodyError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(CustodyError):
    code = ErrorCode.FAILED_PRECONDITION


class PermissionDenied(CustodyError):
    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(CustodyError):
    code = ErrorCode.UNAUTHENTICATED


class ResourceExhausted(CustodyError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Aborted(CustodyError):
    code = ErrorCode.ABORTED


class DataLoss(CustodyError):
    code = ErrorCode.DATA_LOSS


class Unavailable(CustodyError):
    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(CustodyError):
    code = ErrorCode.DEADLINE_EXCEEDED
