"""A join's postgres_changes over time, with the real clients: bindings refused before the
user's token arrived are subscribed when it does; replication_ready means the next write arrives."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.clients import JsListener
from tests.e2e.tables import published
from tests.e2e.test_authorization import user_token


@pytest.fixture
def members_only(db):
    published(db, "members_only", "owner uuid not null, body text", grant="authenticated")
    db.execute("revoke all on public.members_only from anon")
    db.execute("alter table public.members_only enable row level security")
    db.execute("drop policy if exists own_rows on public.members_only")
    db.execute("create policy own_rows on public.members_only for select to authenticated "
               "using (owner = auth.uid())")
    return db


BINDING = {"event": "INSERT", "schema": "public", "table": "members_only"}


def test_set_auth_after_subscribe_subscribes_the_refused_bindings(stack, members_only, supabase_js):
    me = str(uuid.uuid4())
    listener = JsListener(stack.api_url, stack.key("anon"), [BINDING], channel=f"late-{me[:8]}",
                          client=supabase_js)
    try:
        listener.wait_for("status", status="SUBSCRIBED")
        refused = listener.wait_for("system")["payload"]
        assert refused["status"] == "error"
        assert refused["message"] == "Error 401: Unauthorized: role 'anon' cannot read public.members_only"
        listener.set_auth(user_token(1, sub=me))
        subscribed = listener.wait_for("system")["payload"]
        assert subscribed["status"] == "ok" and subscribed["message"] == "Subscribed to PostgreSQL"
        members_only.execute("insert into members_only (owner, body) values (%s, 'someone else''s')",
                             (str(uuid.uuid4()),))
        members_only.execute("insert into members_only (owner, body) values (%s, 'mine')", (me,))
        (change,) = listener.changes(1)
        assert change["payload"]["new"]["body"] == "mine"  # and RLS held back the other row
    finally:
        listener.close()


def test_a_write_on_replication_ready_always_arrives(stack, members_only, supabase_js):
    me = str(uuid.uuid4())
    for attempt in range(3):
        listener = JsListener(stack.api_url, stack.key("anon"), [BINDING], channel=f"ready-{attempt}-{me[:8]}",
                              user_jwt=user_token(1, sub=me), config={"broadcast": {"replication_ready": True}},
                              client=supabase_js)
        try:
            ready = listener.wait_for("system", timeout=20)["payload"]
            while ready["extension"] != "system":
                ready = listener.wait_for("system")["payload"]
            assert ready == {"channel": f"ready-{attempt}-{me[:8]}", "extension": "system",
                             "message": "Replication connection established", "status": "ok"}
            members_only.execute("insert into members_only (owner, body) values (%s, %s)", (me, f"now-{attempt}"))
            (change,) = listener.changes(1)
            assert change["payload"]["new"]["body"] == f"now-{attempt}"
        finally:
            listener.close()


def test_realtime_py_set_auth_after_subscribe_receives_the_changes(stack, members_only):
    import asyncio

    from tests.e2e.clients import PyListener

    me = str(uuid.uuid4())
    listener = PyListener(stack.api_url, stack.key("anon"), [BINDING], channel=f"py-late-{me[:8]}")
    try:
        # realtime-py treats the refusal as a channel error and rejoins with its stored payload;
        # set_auth puts the user's token there (and sends access_token once joined).
        asyncio.run_coroutine_threadsafe(listener.client.set_auth(user_token(1, sub=me)),
                                         listener.loop).result(timeout=10)
        deadline = time.monotonic() + 30
        body = "first"
        while time.monotonic() < deadline:
            members_only.execute("insert into members_only (owner, body) values (%s, %s)", (me, body))
            got = listener.quiet(1.0)
            if got:
                break
        assert got and got[0][1]["data"]["record"]["owner"] == me
    finally:
        listener.close()
