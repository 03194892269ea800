"""DynamoDB's BatchGetItem as one SigV4-signed HTTP request, for the read every drained batch
makes (the warm buckets' versions, store.warm).

botocore spends several milliseconds of CPU on one small call (parameter validation, event
hooks, serialization, its own signing); this is the same request and answer, in the JSON wire
format botocore sends, signed as the lean poster signs, on one kept-alive blocking socket per
thread (`ripple.http1.InlineSockets`): the drain sends it and reads the answer itself (0.3-0.5 ms of CPU a read locally,
against about 0.9 ms through the posters' event loop, which pays a hop each way). Any failure
(throttling, a server error, no answer) raises `LeanReadFailed`, and the caller asks again
through boto3, whose retries and error types then apply.

    reader = LeanBatchGet.for_client(boto3.client("dynamodb"))
    answer = reader.batch_get_item({"bindings": {"Keys": [...], "ConsistentRead": True}})
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ripple import codec
from ripple.aws import Call, observed, report
from ripple.http1 import InlineSockets
from ripple.sigv4 import Signer

TARGET = "DynamoDB_20120810.BatchGetItem"
CONTENT_TYPE = "application/x-amz-json-1.0"


class LeanReadFailed(Exception):
    """The lean request got no usable answer; ask through boto3."""


class LeanBatchGet:
    """BatchGetItem against `endpoint` (https://dynamodb.{region}.amazonaws.com, or moto's URL)."""

    def __init__(self, endpoint: str, signer: Signer, *, timeout: float = 5.0):
        parts = urlsplit(endpoint)
        default = 443 if parts.scheme == "https" else 80
        self.endpoint = endpoint
        self.signer = signer
        self.timeout = timeout
        hostname = parts.hostname or ""
        self._host = hostname if parts.port in (None, default) else f"{hostname}:{parts.port}"
        self._path = parts.path or "/"
        self._sockets = InlineSockets(parts.scheme, hostname, parts.port or default, keep=1, timeout=timeout)

    @classmethod
    def for_client(cls, client: Any) -> LeanBatchGet | None:
        """A reader for the endpoint, region and credentials of a boto3 DynamoDB client; None
        for anything else (a test double), which then answers every read itself."""
        meta = getattr(client, "meta", None)
        signer = getattr(client, "_request_signer", None)
        credentials = getattr(signer, "_credentials", None)
        endpoint = getattr(meta, "endpoint_url", None)
        region = getattr(meta, "region_name", None)
        if not isinstance(endpoint, str) or not isinstance(region, str) or credentials is None \
                or not hasattr(credentials, "get_frozen_credentials"):
            return None
        return cls(endpoint, Signer(credentials, region, "dynamodb"))

    def batch_get_item(self, request_items: dict[str, Any]) -> dict[str, Any]:
        """The answer of BatchGetItem(RequestItems=request_items), as its JSON: Responses (items
        in the wire format, {"S": ...}) and UnprocessedKeys."""
        if observed():
            report(Call("dynamodb", "BatchGetItem", {"RequestItems": request_items}, self.endpoint))
        body = codec.dumps({"RequestItems": request_items}).encode()
        signed = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
        head = [f"POST {self._path} HTTP/1.1", f"Host: {self._host}",
                *(f"{k}: {v}" for k, v in signed.items()),
                *(f"{k}: {v}" for k, v in self.signer.headers("POST", self._host, self._path, body,
                                                              signed=signed).items()),
                f"Content-Length: {len(body)}\r\n\r\n"]
        status, error_type, answer = self._exchange("\r\n".join(head).encode() + body)
        if status != 200:
            raise LeanReadFailed(f"{status} {error_type}")
        try:
            parsed: dict[str, Any] = codec.loads(answer)
        except ValueError as exc:
            raise LeanReadFailed("the answer is not JSON") from exc
        return parsed

    def _exchange(self, request: bytes) -> tuple[int, str, bytes]:
        """Send `request` on this thread's kept-alive connection and read the whole answer,
        blocking: one read a batch, made by the drain itself, costs less CPU this way than a hop
        to the posters' event loop. One that got no answer is sent once more, on a new
        connection (the read is safe to repeat); a second failure raises LeanReadFailed."""
        status, error_type, answer = self._sockets.exchange_all([request])[0]
        if status == 0:
            status, error_type, answer = self._sockets.exchange_all([request])[0]
        if status == 0:
            raise LeanReadFailed(error_type)
        return status, error_type, answer
