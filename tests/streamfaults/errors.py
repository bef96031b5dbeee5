"""AWS JSON 1.0 error responses, shaped the way botocore and the runtime parse them."""

from __future__ import annotations

import json
import uuid
import zlib

# The namespace AWS puts before '#' in `__type`; botocore keeps only the part after it.
_NAMESPACE = {
    "ThrottlingException": "com.amazon.coral.availability",
    "AccessDeniedException": "com.amazon.coral.service",
    "UnrecognizedClientException": "com.amazon.coral.service",
}
_STATUS = {"InternalServerError": 500, "ServiceUnavailable": 503}


class StreamError(Exception):
    """An error the proxy answers with itself instead of forwarding the request."""

    def __init__(self, code: str, message: str = "", status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message or code
        self.status = status if status is not None else _STATUS.get(code, 400)

    def body(self) -> bytes:
        namespace = _NAMESPACE.get(self.code, "com.amazonaws.dynamodb.v20120810")
        return json.dumps({"__type": f"{namespace}#{self.code}", "message": self.message}).encode()


def json_headers(body: bytes) -> dict[str, str]:
    """Headers AWS sends with a JSON body (botocore checks x-amz-crc32 for DynamoDB)."""
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": uuid.uuid4().hex.upper(),
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
        "Content-Length": str(len(body)),
    }
