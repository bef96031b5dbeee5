"""Map AWS errors onto the sync's error classes, once, at the boundary."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)

from sync.errors import (
    IteratorExpired,
    PermanentError,
    RequestTimedOut,
    RetentionExceeded,
    SyncError,
    Throttled,
    TransientError,
)

_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def classify(error: Exception, context: str) -> SyncError:
    """The sync error for an exception raised by a boto3 call; ``context`` names the call
    and its subject (table, stream ARN, shard id) for the message."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        text = f"{context}: {code or status}: {message}"
        if code == "ExpiredIteratorException":
            return IteratorExpired(text)
        if code == "TrimmedDataAccessException":
            return RetentionExceeded(text)
        if code in _THROTTLING_CODES:
            return Throttled(text)
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return TransientError(text)
        return PermanentError(text)
    if isinstance(error, ReadTimeoutError):
        return RequestTimedOut(f"{context}: {error}")
    if isinstance(error, NoCredentialsError):
        return PermanentError(
            f"{context}: no AWS credentials found. Fix: with dynamodb_aws_auth: iam_role, give "
            "the runtime a role (instance or container metadata) or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, as dynamodb_aws_iam_role_source allows (auto: boto3's whole "
            "chain, metadata, env); or set dynamodb_aws_auth: key with "
            "dynamodb_aws_access_key_id and dynamodb_aws_secret_access_key"
        )
    if isinstance(error, ConnectionError | HTTPClientError):
        return TransientError(f"{context}: {error}")
    if isinstance(error, BotoCoreError):
        return PermanentError(f"{context}: {error}")
    return PermanentError(f"{context}: {type(error).__name__}: {error}")
