"""AWS Signature Version 4 for plain HTTP requests, as botocore's `SigV4Auth` signs them.

The signing key is derived once per (secret key, date, region, service) and reused, so a request
costs two SHA-256 digests and one HMAC. Credentials come from botocore's provider chain (on
Lambda: the role's keys with a session token) and are re-read on every request, so rotated
credentials are picked up as botocore refreshes them.

    signer = Signer(credentials, region="eu-west-1", service="execute-api")
    headers = signer.headers("POST", "abc.execute-api.eu-west-1.amazonaws.com",
                             "/prod/%40connections/L0SM9cOFvHcCIhw%3D", b"{}")
"""
from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode(), "sha256")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key for one day (YYYYMMDD), region and service."""
    k_date = _hmac(f"AWS4{secret_key}".encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


@lru_cache(maxsize=65536)
def canonical_path(path: str) -> str:
    """The path as it enters the canonical request: dot segments and empty segments removed, then
    percent-encoded once more (non-S3 services sign the already-encoded path encoded again)."""
    return quote(normalize_url_path(path), safe="/~")


class Signer:
    """Signs requests to one service in one region with credentials from a botocore provider
    (`botocore.session.get_session().get_credentials()`: anything with get_frozen_credentials())."""

    def __init__(self, credentials: Any, region: str, service: str):
        self.credentials = credentials
        self.region = region
        self.service = service
        self._key: tuple[tuple[str, str], bytes] | None = None

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        # One entry: the key changes once a day or when the credentials rotate.
        cached = self._key
        if cached is not None and cached[0] == (secret_key, date):
            return cached[1]
        key = signing_key(secret_key, date, self.region, self.service)
        self._key = ((secret_key, date), key)
        return key

    def headers(self, method: str, host: str, path: str, body: bytes,
                now: float | None = None, signed: dict[str, str] | None = None) -> dict[str, str]:
        """The headers that authorize this request: X-Amz-Date, X-Amz-Security-Token (when the
        credentials have one) and Authorization. `host` is the Host header's value (port included
        unless it is the scheme's default), `path` the request path as sent (percent-encoded), no
        query string. The signed headers are host, x-amz-date and x-amz-security-token, and the
        request's own headers in `signed` (e.g. X-Amz-Target), which the caller sends as given."""
        creds = self.credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        date = stamp[:8]
        headers = {"X-Amz-Date": stamp}
        if creds.token:
            headers["X-Amz-Security-Token"] = creds.token
        if signed:
            values = {"host": host, "x-amz-date": stamp, **{k.lower(): " ".join(v.split()) for k, v in signed.items()}}
            if creds.token:
                values["x-amz-security-token"] = creds.token
            names = sorted(values)
            canonical_headers = "".join(f"{name}:{values[name]}\n" for name in names)
            signed_names = ";".join(names)
        elif creds.token:
            canonical_headers = f"host:{host}\nx-amz-date:{stamp}\nx-amz-security-token:{creds.token}\n"
            signed_names = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{host}\nx-amz-date:{stamp}\n"
            signed_names = "host;x-amz-date"
        canonical_request = "\n".join((method, canonical_path(path), "", canonical_headers, signed_names,
                                       hashlib.sha256(body).hexdigest()))
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join((ALGORITHM, stamp, scope,
                                    hashlib.sha256(canonical_request.encode()).hexdigest()))
        signature = hmac.digest(self._signing_key(creds.secret_key, date), string_to_sign.encode(),
                                "sha256").hex()
        headers["Authorization"] = (f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={signed_names}, Signature={signature}")
        return headers
