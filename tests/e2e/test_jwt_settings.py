"""RIPPLE_JWT_AUDIENCE / RIPPLE_JWT_ISSUER on the running stack: enforced on connect, join and access_token."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from ripple.config import settings
from ripple.local.stack import DEV_JWT_SECRET
from tests.e2e.test_authorization import DOCS, assert_closed, drain, tenants  # noqa: F401
from tests.e2e.wire import Wire

AUDIENCE = "ripple-app"
ISSUER = "https://auth.example.com/"


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv("RIPPLE_JWT_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("RIPPLE_JWT_ISSUER", ISSUER)
    settings.cache_clear()
    yield
    monkeypatch.undo()
    settings.cache_clear()


def token(role: str = "authenticated", org: int = 61, **over) -> str:
    claims = {"role": role, "sub": str(uuid.uuid4()), "organization_id": org, "aud": AUDIENCE, "iss": ISSUER,
              "exp": int(time.time()) + 600, **over}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, DEV_JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("key,reason", [
    (None, "JWT issuer is not accepted"),  # the stack's own anon key: iss "ripple-local", no aud
    (token("anon", aud="another-app"), "JWT audience is not accepted"),
    (token("anon", iss="https://evil.example/"), "JWT issuer is not accepted"),
    (token("anon", iss=None), "JWT has no iss claim"),
    (token("anon", aud=None), "JWT has no aud claim"),
])
def test_connect_refuses_a_token_for_another_audience_or_issuer(stack, strict, key, reason):
    with pytest.raises(InvalidStatus) as refused:
        Wire(stack.ws_url, key or stack.key("anon"))
    assert refused.value.response.status_code == 401
    assert reason in refused.value.response.body.decode()
    Wire(stack.ws_url, token("anon")).close()  # the same key with the accepted aud and iss connects


def test_join_and_access_token_enforce_them_too(stack, tenants, strict):
    wire = Wire(stack.ws_url, token("anon"))
    try:
        ref = wire.send("realtime:strict", "phx_join",
                        {"config": {"postgres_changes": [DOCS]}, "access_token": token(iss="https://evil.example/")},
                        join_ref="realtime:strict")
        assert wire.recv()["payload"] == {"status": "error",
                                          "response": {"reason": "InvalidJWTToken: JWT issuer is not accepted"}}
        ref = wire.send("realtime:strict", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                        "access_token": token()}, join_ref="realtime:strict")
        reply, system = wire.recv(), wire.recv()
        assert reply["ref"] == ref and reply["payload"]["status"] == "ok"
        assert system["payload"]["status"] == "ok"
        tenants.execute("insert into docs (organization_id, owner, title) values (61, gen_random_uuid(), 'in')")
        assert [m["payload"]["data"]["record"]["title"] for m in drain(wire)] == ["in"]

        wire.send("realtime:strict", "access_token", {"access_token": token(aud="another-app")},
                  join_ref="realtime:strict")
        assert_closed(wire, "realtime:strict", "InvalidJWTToken: JWT audience is not accepted")
        tenants.execute("insert into docs (organization_id, owner, title) values (61, gen_random_uuid(), 'out')")
        assert drain(wire, 1.0) == []
    finally:
        wire.close()
