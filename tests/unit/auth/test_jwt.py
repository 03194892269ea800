"""Token verification: HS256 with the secret, RS256/ES256 from a JWKS served over real HTTP."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ripple.auth import jwt as ripple_jwt
from ripple.auth.jwt import AuthError, verify
from ripple.config import settings

SECRET = "unit-test-secret-with-at-least-32-characters"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key, kid, alg):
    algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    return {**json.loads(algo.to_jwk(key.public_key())), "kid": kid, "alg": alg, "use": "sig"}


JWKS_FETCHES: list[str] = []


@pytest.fixture(scope="module")
def jwks_url():
    body = json.dumps({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            JWKS_FETCHES.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


def _clear():
    settings.cache_clear()
    ripple_jwt._jwks.cache_clear()


@pytest.fixture(autouse=True)
def configured(monkeypatch, jwks_url):
    monkeypatch.setenv("RIPPLE_JWT_SECRET", SECRET)
    monkeypatch.setenv("RIPPLE_JWKS_URL", jwks_url)
    _clear()
    yield
    monkeypatch.undo()
    _clear()


def claims(**over):
    base = {"role": "authenticated", "sub": "7d3e0a8c-0000-4000-8000-000000000001",
            "exp": int(time.time()) + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_hs256_with_the_secret():
    got = verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert got.role == "authenticated" and got.sub.startswith("7d3e")


@pytest.mark.parametrize("key,alg,kid", [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")])
def test_asymmetric_tokens_from_the_jwks(key, alg, kid):
    token = jwt.encode(claims(role="anon"), key, algorithm=alg, headers={"kid": kid})
    assert verify(token).role == "anon"


def test_the_jwks_is_fetched_once_and_cached():
    JWKS_FETCHES.clear()
    for _ in range(5):
        for key, alg, kid in ((RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")):
            assert verify(jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})).role == "authenticated"
    assert JWKS_FETCHES == ["/.well-known/jwks.json"]


@pytest.mark.parametrize("token,reason", [
    (None, "missing JWT"),
    ("", "missing JWT"),
    ("a.b.c", "malformed JWT"),
    (jwt.encode(claims(), None, algorithm="none"), "unsupported JWT algorithm 'none'"),
    (jwt.encode(claims(), SECRET + SECRET, algorithm="HS512"), "unsupported JWT algorithm 'HS512'"),
    (jwt.encode(claims(), "another-secret-that-is-at-least-32-chars!", algorithm="HS256"), "invalid JWT signature"),
    (jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"), "Token has expired"),
    (jwt.encode(claims(exp=None), SECRET, algorithm="HS256"), "JWT has no exp claim"),
    (jwt.encode(claims(role=None), SECRET, algorithm="HS256"), "JWT has no role claim"),
    (jwt.encode(claims(role="postgres"), SECRET, algorithm="HS256"), "unknown role 'postgres'"),
    (jwt.encode(claims(), STRANGER, algorithm="RS256", headers={"kid": "rsa-1"}), "invalid JWT signature"),
    (jwt.encode(claims(), STRANGER, algorithm="RS256", headers={"kid": "nope"}), "no signing key matches"),
])
def test_refused_tokens(token, reason):
    with pytest.raises(AuthError) as refused:
        verify(token)
    assert reason in str(refused.value)


def test_hs256_token_cannot_be_forged_with_the_public_key():
    # The classic confusion attack: an HS256 token whose HMAC key is the RSA public key's PEM.
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()) + "."
                     + b64(json.dumps(claims()).encode()))
    forged = signing_input + "." + b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    with pytest.raises(AuthError) as refused:
        verify(forged)
    assert "invalid JWT signature" in str(refused.value)


def test_unreachable_jwks_is_a_clear_refusal(monkeypatch):
    monkeypatch.setenv("RIPPLE_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    _clear()
    with pytest.raises(AuthError) as refused:
        verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"}))
    assert "signing keys are unavailable" in str(refused.value)


def _unsigned(header: dict, body: dict) -> str:
    import base64

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(body)}.c2ln"


@pytest.mark.parametrize("token,reason", [
    # An ES256 header naming the JWKS's RSA key: PyJWT raises TypeError, not its own error.
    (jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"}), "invalid JWT"),
    (jwt.encode(claims(exp=10**40), SECRET, algorithm="HS256"), "exp out of range"),
    (jwt.encode(claims(name="a\x00b"), SECRET, algorithm="HS256"), "NUL"),
    (jwt.encode(claims(name="\ud83d"), SECRET, algorithm="HS256"), "surrogate"),
    (_unsigned({"alg": ["HS256"]}, claims()), "malformed JWT"),
    (_unsigned({"alg": "ES256", "kid": {"x": 1}}, claims()), "JWT"),
])
def test_crafted_tokens_are_refused_not_crashed_on(token, reason):
    with pytest.raises(AuthError) as refused:
        verify(token)
    assert reason in str(refused.value)
