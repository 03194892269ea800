"""Every subscriber receives only what its JWT may read: RLS and column privileges per change."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest

from ripple.local.stack import DEV_JWT_SECRET
from tests.e2e.clients import PyListener
from tests.e2e.wire import Wire

SCHEMA = """
create table if not exists public.docs (
  id bigint generated always as identity primary key,
  organization_id int not null,
  owner uuid not null,
  title text not null,
  secret text
);
alter table public.docs enable row level security;
revoke all on public.docs from anon, authenticated;
grant select (id, organization_id, owner, title) on public.docs to authenticated;
drop policy if exists docs_by_org on public.docs;
create policy docs_by_org on public.docs for select to authenticated
  using (organization_id = (auth.jwt() ->> 'organization_id')::int);

create table if not exists public.diary (
  id bigint generated always as identity primary key,
  owner uuid not null,
  body text not null
);
alter table public.diary enable row level security;
grant select on public.diary to authenticated;
drop policy if exists diary_owner on public.diary;
create policy diary_owner on public.diary for select to authenticated using (auth.uid() = owner);

do $$ begin
  if not exists (select 1 from pg_publication_tables where tablename = 'docs') then
    alter publication supabase_realtime add table public.docs; end if;
  if not exists (select 1 from pg_publication_tables where tablename = 'diary') then
    alter publication supabase_realtime add table public.diary; end if;
end $$;
"""


@pytest.fixture
def tenants(db):
    db.execute(SCHEMA)
    return db


def user_token(org: int, sub: str | None = None, **extra) -> str:
    claims = {"role": "authenticated", "sub": sub or str(uuid.uuid4()), "organization_id": org,
              "exp": int(time.time()) + 3600, **extra}
    return jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")


def drain(wire: Wire, seconds: float = 1.5) -> list[dict]:
    got = []
    try:
        while True:
            got.append(wire.recv(timeout=seconds))
    except TimeoutError:
        return got


DOCS = {"event": "*", "schema": "public", "table": "docs"}


def test_tenants_never_see_each_others_rows(stack, tenants):
    a, b = Wire(stack.ws_url, user_token(1)), Wire(stack.ws_url, user_token(2))
    nosy = Wire(stack.ws_url, user_token(1))
    try:
        a.join("realtime:docs", [DOCS])
        b.join("realtime:docs", [DOCS])
        # A filter cannot widen what RLS allows.
        nosy.join("realtime:docs", [{**DOCS, "filter": "organization_id=eq.2"}])
        row = tenants.execute("insert into docs (organization_id, owner, title, secret) "
                              "values (1, gen_random_uuid(), 'plan', 's3cret') returning id").fetchone()[0]
        tenants.execute("insert into docs (organization_id, owner, title) values (2, gen_random_uuid(), 'theirs')")
        tenants.execute("update docs set organization_id = 2, title = 'moved' where id = %s", (row,))
        tenants.execute("delete from docs where id = %s", (row,))

        seen_a = [(m["payload"]["data"]["type"], m["payload"]["data"].get("record", {}).get("title"))
                  for m in drain(a)]
        assert seen_a == [("INSERT", "plan")]  # not B's insert, not the move out, not the delete

        seen_b = drain(b)
        assert [(m["payload"]["data"]["type"]) for m in seen_b] == ["INSERT", "UPDATE", "DELETE"]
        insert, moved, deleted = (m["payload"]["data"] for m in seen_b)
        assert insert["record"]["title"] == "theirs"
        assert moved["record"]["title"] == "moved"
        assert moved["old_record"] == {}  # B could not read the row before it moved in
        assert deleted["old_record"]["title"] == "moved"
        assert drain(nosy, 0.5) == []
        for data in (insert, moved, deleted):
            assert "secret" not in data.get("record", {}) and "secret" not in data.get("old_record", {})
            assert "secret" not in [c["name"] for c in data["columns"]]
    finally:
        for w in (a, b, nosy):
            w.close()


def test_a_delete_is_checked_against_the_row_as_it_was(stack, tenants):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    mine = Wire(stack.ws_url, user_token(1, sub=me))
    try:
        mine.join("realtime:diary", [{"event": "*", "schema": "public", "table": "diary"}])
        tenants.execute("insert into diary (owner, body) values (%s, 'dear diary'), (%s, 'not yours')", (me, other))
        tenants.execute("delete from diary where owner in (%s, %s)", (me, other))
        got = [(m["payload"]["data"]["type"], (m["payload"]["data"].get("record") or
                                               m["payload"]["data"]["old_record"])["body"]) for m in drain(mine)]
        assert got == [("INSERT", "dear diary"), ("DELETE", "dear diary")]
    finally:
        mine.close()


def test_a_role_without_select_gets_unauthorized(stack, tenants):
    anon = Wire(stack.ws_url, stack.key("anon"))
    try:
        reply, system = anon.join("realtime:docs", [DOCS])
        assert reply["payload"]["status"] == "ok"
        assert system["payload"]["status"] == "error"
        assert system["payload"]["message"].startswith("Error 401: Unauthorized")
        tenants.execute("insert into docs (organization_id, owner, title) values (1, gen_random_uuid(), 'x')")
        assert drain(anon, 0.8) == []
    finally:
        anon.close()


def test_channel_access_token_sets_the_claims(stack, tenants):
    # Connected with the anon key, like supabase-js; the user's JWT arrives in phx_join.
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        ref = wire.send("realtime:docs", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                      "access_token": user_token(7)}, join_ref="1")
        assert wire.recv()["ref"] == ref
        assert wire.recv()["payload"]["status"] == "ok"
        tenants.execute("insert into docs (organization_id, owner, title) values (7, gen_random_uuid(), 'seven')")
        tenants.execute("insert into docs (organization_id, owner, title) values (8, gen_random_uuid(), 'eight')")
        assert [m["payload"]["data"]["record"]["title"] for m in drain(wire)] == ["seven"]
        forged = user_token(7)[:-3] + "abc"
        ref = wire.send("realtime:other", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                       "access_token": forged}, join_ref="2")
        reply = wire.recv()
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("InvalidJWTToken:")
    finally:
        wire.close()


def test_realtime_py_with_a_user_token_sees_only_its_tenant(stack, tenants):
    py = PyListener(stack.api_url, user_token(3), [DOCS], channel="docs-py")
    try:
        tenants.execute("insert into docs (organization_id, owner, title) values (4, gen_random_uuid(), 'other')")
        tenants.execute("insert into docs (organization_id, owner, title, secret) "
                        "values (3, gen_random_uuid(), 'ours', 'hidden')")
        (_, payload), = py.changes(1)
        assert payload["data"]["record"]["title"] == "ours" and "secret" not in payload["data"]["record"]
        assert py.quiet(0.8) == []
    finally:
        py.close()


def join_with(wire: Wire, topic: str, token: str) -> None:
    ref = wire.send(topic, "phx_join", {"config": {"postgres_changes": [DOCS]}, "access_token": token},
                    join_ref=topic)
    assert wire.recv()["ref"] == ref
    assert wire.recv()["payload"]["status"] == "ok"


def test_an_expired_token_receives_nothing_more(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:short", user_token(11, exp=int(time.time()) + 2))
        tenants.execute("insert into docs (organization_id, owner, title) values (11, gen_random_uuid(), 'in time')")
        assert wire.recv()["payload"]["data"]["record"]["title"] == "in time"
        time.sleep(2.5)
        tenants.execute("insert into docs (organization_id, owner, title) values (11, gen_random_uuid(), 'too late')")
        assert drain(wire) == []
    finally:
        wire.close()


def test_access_token_messages_reauthorize_or_close_the_channel(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:switch", user_token(21))
        wire.send("realtime:switch", "access_token", {"access_token": user_token(22)}, join_ref="realtime:switch")
        time.sleep(0.3)
        tenants.execute("insert into docs (organization_id, owner, title) values (21, gen_random_uuid(), 'old org')")
        tenants.execute("insert into docs (organization_id, owner, title) values (22, gen_random_uuid(), 'new org')")
        assert [m["payload"]["data"]["record"]["title"] for m in drain(wire)] == ["new org"]

        wire.send("realtime:switch", "access_token", {"access_token": user_token(22, exp=int(time.time()) - 1)},
                  join_ref="realtime:switch")
        error, close = wire.recv(), wire.recv()
        assert error["event"] == "system" and error["payload"]["status"] == "error"
        assert error["payload"]["message"] == "InvalidJWTToken: Token has expired"
        assert close["event"] == "phx_close" and close["topic"] == "realtime:switch"
        tenants.execute("insert into docs (organization_id, owner, title) values (22, gen_random_uuid(), 'closed')")
        assert drain(wire) == []
    finally:
        wire.close()


@pytest.mark.parametrize("bad", [
    jwt.encode({"role": "authenticated", "exp": int(time.time()) + 600}, None, algorithm="none"),
    jwt.encode({"role": "authenticated", "exp": int(time.time()) + 600},
               "some-other-secret-of-at-least-thirty-two-chars", algorithm="HS256"),
    "forged.token.value",
], ids=["alg-none", "wrong-key", "garbage"])
def test_forged_access_tokens_close_the_channel(stack, tenants, bad):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:forged", user_token(41))
        wire.send("realtime:forged", "access_token", {"access_token": bad}, join_ref="realtime:forged")
        error, close = wire.recv(), wire.recv()
        assert error["payload"]["status"] == "error" and error["payload"]["message"].startswith("InvalidJWTToken:")
        assert close["event"] == "phx_close"
        tenants.execute("insert into docs (organization_id, owner, title) values (41, gen_random_uuid(), 'x')")
        assert drain(wire, 1.0) == []
    finally:
        wire.close()


def test_access_token_for_a_role_that_cannot_read_closes_the_channel(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:downgrade", user_token(31))
        wire.send("realtime:downgrade", "access_token", {"access_token": stack.key("anon")},
                  join_ref="realtime:downgrade")
        error, close = wire.recv(), wire.recv()
        assert error["payload"]["message"].startswith("Error 401: Unauthorized")
        assert close["event"] == "phx_close"
    finally:
        wire.close()


PRIVATE_POLICIES = """
drop policy if exists team_read on realtime.messages;
drop policy if exists team_write on realtime.messages;
create policy team_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'team-' || (auth.jwt() ->> 'organization_id')
         and extension in ('broadcast', 'presence'));
create policy team_write on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'team-' || (auth.jwt() ->> 'organization_id')
              and extension = 'broadcast' and coalesce((auth.jwt() ->> 'can_post')::boolean, false));
"""


def test_private_channels_follow_realtime_messages_policies(stack, tenants):
    from tests.e2e.clients import JsRoom

    tenants.execute(PRIVATE_POLICIES)
    writer = JsRoom(stack.api_url, user_token(5, can_post=True), "team-5",
                    {"private": True, "broadcast": {"ack": True}})
    reader = Wire(stack.ws_url, user_token(5))
    outsider = Wire(stack.ws_url, user_token(6))
    public = Wire(stack.ws_url, user_token(5))
    try:
        writer.wait_for("status", status="SUBSCRIBED")
        reply, _ = reader.join("realtime:team-5", [], private=True, broadcast={"ack": True})
        assert reply["payload"]["status"] == "ok"
        reply, _ = outsider.join("realtime:team-5", [], private=True)
        assert reply["payload"] == {"status": "error", "response": {
            "reason": "Unauthorized: You do not have permissions to read from this Channel topic: team-5"}}
        public.join("realtime:team-5", [])  # the public side of the same name is another room

        writer.do(op="send", event="memo", payload={"text": "for the team"})
        assert writer.wait_for("sent")["result"] == "ok"
        assert reader.recv()["payload"]["payload"] == {"text": "for the team"}

        ref = reader.send("realtime:team-5", "broadcast", {"type": "broadcast", "event": "memo", "payload": {}},
                          join_ref="jrealtime:team-5")
        denied = reader.recv()
        assert denied["ref"] == ref and denied["payload"]["status"] == "error"
        assert denied["payload"]["response"]["reason"].startswith("Unauthorized: You do not have permissions to write")
        with pytest.raises(TimeoutError):
            writer.wait_for("broadcast", timeout=1.0)
        assert drain(public, 0.5) == [] and drain(outsider, 0.2) == []
        assert tenants.execute("select count(*) from realtime.messages").fetchone()[0] == 0
    finally:
        writer.close()
        for w in (reader, outsider, public):
            w.close()
