"""Every subscriber receives only what its JWT may read: RLS and column privileges per change."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest

from ripple.local.stack import DEV_JWT_SECRET
from tests.e2e.clients import PyListener
from tests.e2e.wire import Wire, before_marker, heartbeat

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


def title(frame: dict) -> str:
    """The title of the docs row a postgres_changes push carries."""
    return frame["payload"]["data"]["record"]["title"]


def docs_reader(stack, org: int, topic: str = "realtime:docs-control") -> Wire:
    """A control: subscribed to every change of `docs` with a token of organization `org`."""
    wire = Wire(stack.ws_url, user_token(org))
    wire.join(topic, [DOCS])
    return wire


def test_tenants_never_see_each_others_rows(stack, tenants):
    a, b = Wire(stack.ws_url, user_token(1)), Wire(stack.ws_url, user_token(2))
    nosy = Wire(stack.ws_url, user_token(1))
    try:
        a.join("realtime:docs", [DOCS])
        b.join("realtime:docs", [DOCS])
        # A filter cannot widen what RLS allows, whatever its operator.
        nosy.join("realtime:docs", [{**DOCS, "filter": f} for f in (
            "organization_id=eq.2", "organization_id=neq.1", "organization_id=in.(2,3)", "organization_id=gt.1",
            "title=like.*", "title=imatch.^(the|mov)", "owner=not.is.null")])
        row = tenants.execute("insert into docs (organization_id, owner, title, secret) "
                              "values (1, gen_random_uuid(), 'plan', 's3cret') returning id").fetchone()[0]
        tenants.execute("insert into docs (organization_id, owner, title) values (2, gen_random_uuid(), 'theirs')")
        tenants.execute("update docs set organization_id = 2, title = 'moved' where id = %s", (row,))
        tenants.execute("delete from docs where id = %s", (row,))

        seen_b = drain(b)  # the control: B receives what A must not, before A is read
        seen_a = [(m["payload"]["data"]["type"], m["payload"]["data"].get("record", {}).get("title"))
                  for m in drain(a)]
        assert seen_a == [("INSERT", "plan")]  # not B's insert, not the move out, not the delete

        assert [(m["payload"]["data"]["type"]) for m in seen_b] == ["INSERT", "UPDATE", "DELETE"]
        insert, moved, deleted = (m["payload"]["data"] for m in seen_b)
        assert insert["record"]["title"] == "theirs"
        assert moved["record"]["title"] == "moved"
        assert moved["old_record"] == {}  # B could not read the row before it moved in
        assert deleted["old_record"]["title"] == "moved"
        # Only its own tenant's insert, through the filters that match it; nothing of tenant 2.
        assert [(m["payload"]["data"]["type"], m["payload"]["data"]["record"]["title"], len(m["payload"]["ids"]))
                for m in drain(nosy, 0.5)] == [("INSERT", "plan", 2)]
        for data in (insert, moved, deleted):
            assert "secret" not in data.get("record", {}) and "secret" not in data.get("old_record", {})
            assert "secret" not in [c["name"] for c in data["columns"]]
    finally:
        for w in (a, b, nosy):
            w.close()


def test_a_delete_is_checked_against_the_row_as_it_was(stack, tenants):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    mine = Wire(stack.ws_url, user_token(1, sub=me))
    theirs = Wire(stack.ws_url, user_token(1, sub=other))  # the control: the other owner
    try:
        mine.join("realtime:diary", [{"event": "*", "schema": "public", "table": "diary"}])
        theirs.join("realtime:diary", [{"event": "*", "schema": "public", "table": "diary"}])
        tenants.execute("insert into diary (owner, body) values (%s, 'dear diary'), (%s, 'not yours')", (me, other))
        tenants.execute("delete from diary where owner in (%s, %s)", (me, other))
        assert [(m["payload"]["data"]["type"], (m["payload"]["data"].get("record") or
                                                m["payload"]["data"]["old_record"])["body"])
                for m in (theirs.recv(), theirs.recv())] == [("INSERT", "not yours"), ("DELETE", "not yours")]
        got = [(m["payload"]["data"]["type"], (m["payload"]["data"].get("record") or
                                               m["payload"]["data"]["old_record"])["body"]) for m in drain(mine)]
        assert got == [("INSERT", "dear diary"), ("DELETE", "dear diary")]
    finally:
        mine.close()
        theirs.close()


def test_a_role_without_select_gets_unauthorized(stack, tenants):
    anon = Wire(stack.ws_url, stack.key("anon"))
    control = docs_reader(stack, 1)
    try:
        reply, system = anon.join("realtime:docs", [DOCS])
        assert reply["payload"]["status"] == "ok"
        assert system["payload"]["status"] == "error"
        assert system["payload"]["message"].startswith("Error 401: Unauthorized")
        tenants.execute("insert into docs (organization_id, owner, title) values (1, gen_random_uuid(), 'x')")
        assert title(control.recv()) == "x"
        assert before_marker(anon, tenants) == []
        assert drain(anon, 0.8) == []
    finally:
        anon.close()
        control.close()


def test_channel_access_token_sets_the_claims(stack, tenants):
    # Connected with the anon key, like supabase-js; the user's JWT arrives in phx_join.
    wire = Wire(stack.ws_url, stack.key("anon"))
    control = docs_reader(stack, 8)
    try:
        ref = wire.send("realtime:docs", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                      "access_token": user_token(7)}, join_ref="1")
        assert wire.recv()["ref"] == ref
        assert wire.recv()["payload"]["status"] == "ok"
        tenants.execute("insert into docs (organization_id, owner, title) values (7, gen_random_uuid(), 'seven')")
        tenants.execute("insert into docs (organization_id, owner, title) values (8, gen_random_uuid(), 'eight')")
        assert title(control.recv()) == "eight"
        assert [m["payload"]["data"]["record"]["title"] for m in drain(wire)] == ["seven"]
        forged = user_token(7)[:-3] + "abc"
        ref = wire.send("realtime:other", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                       "access_token": forged}, join_ref="2")
        reply = wire.recv()
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("InvalidJWTToken:")
    finally:
        wire.close()
        control.close()


def test_realtime_py_with_a_user_token_sees_only_its_tenant(stack, tenants):
    py = PyListener(stack.api_url, user_token(3), [DOCS], channel="docs-py")
    control = docs_reader(stack, 4)
    try:
        tenants.execute("insert into docs (organization_id, owner, title) values (4, gen_random_uuid(), 'other')")
        tenants.execute("insert into docs (organization_id, owner, title, secret) "
                        "values (3, gen_random_uuid(), 'ours', 'hidden')")
        (_, payload), = py.changes(1)
        assert payload["data"]["record"]["title"] == "ours" and "secret" not in payload["data"]["record"]
        assert title(control.recv()) == "other"
        assert py.quiet(0.8) == []
    finally:
        py.close()
        control.close()


def join_with(wire: Wire, topic: str, token: str) -> None:
    ref = wire.send(topic, "phx_join", {"config": {"postgres_changes": [DOCS]}, "access_token": token},
                    join_ref=topic)
    assert wire.recv()["ref"] == ref
    assert wire.recv()["payload"]["status"] == "ok"


def assert_closed(wire: Wire, topic: str, starts: str) -> None:
    """The channel was ended by the server: a `system` error saying why, then `phx_close`."""
    error, close = wire.recv(), wire.recv()
    assert error["event"] == "system" and error["topic"] == topic, error
    assert error["payload"]["status"] == "error" and error["payload"]["message"].startswith(starts), error
    assert close["event"] == "phx_close" and close["topic"] == topic, close


def test_an_expired_token_is_told_and_receives_nothing_more(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:short", user_token(11, exp=int(time.time()) + 2))
        tenants.execute("insert into docs (organization_id, owner, title) values (11, gen_random_uuid(), 'in time')")
        assert wire.recv()["payload"]["data"]["record"]["title"] == "in time"
        time.sleep(2.5)
        tenants.execute("insert into docs (organization_id, owner, title) values (11, gen_random_uuid(), 'too late')")
        assert_closed(wire, "realtime:short", "Token has expired")
        control = docs_reader(stack, 11)
        tenants.execute("insert into docs (organization_id, owner, title) values (11, gen_random_uuid(), 'later')")
        assert title(control.recv()) == "later"
        control.close()
        assert before_marker(wire, tenants) == []
        assert drain(wire) == []
    finally:
        wire.close()


def test_an_expired_token_closes_broadcast_and_presence_too(stack, tenants):
    short, other = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    witness = Wire(stack.ws_url, stack.key("anon"))  # the control: a member whose token is good
    try:
        ref = short.send("realtime:lobby", "phx_join", {"config": {"broadcast": {"self": True}},
                                                        "access_token": user_token(12, exp=int(time.time()) + 2)},
                         join_ref="s")
        assert short.recv()["ref"] == ref
        other.join("realtime:lobby", [])
        witness.join("realtime:lobby", [])
        time.sleep(2.5)
        # Someone else's broadcast would reach it: instead it is told its token expired.
        other.send("realtime:lobby", "broadcast", {"type": "broadcast", "event": "hi", "payload": {}}, join_ref="j")
        assert_closed(short, "realtime:lobby", "Token has expired")
        # Its own sends after expiry go nowhere.
        other.send("realtime:lobby", "broadcast", {"type": "broadcast", "event": "again", "payload": {}}, join_ref="j")
        assert [witness.recv()["payload"]["event"] for _ in range(2)] == ["hi", "again"]
        ref = short.send("realtime:lobby", "broadcast", {"type": "broadcast", "event": "late", "payload": {}},
                         join_ref="s")
        assert drain(short, 0.8) == [{"topic": "realtime:lobby", "event": "phx_reply", "ref": ref,
                                      "payload": {"status": "error", "response": {"reason": "unmatched topic"}}}]
        # A member's broadcast sent after `late` was answered reaches `other`, and nothing before it.
        witness.send("realtime:lobby", "broadcast", {"type": "broadcast", "event": "after", "payload": {}},
                     join_ref="jrealtime:lobby")
        assert other.recv()["payload"]["event"] == "after"
        assert drain(other, 0.5) == []
    finally:
        short.close()
        other.close()
        witness.close()


def test_a_refreshed_token_keeps_every_part_of_the_channel(stack, tenants):
    wire, speaker = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    try:
        ref = wire.send("realtime:refresh", "phx_join", {
            "config": {"postgres_changes": [DOCS], "broadcast": {"self": False}},
            "access_token": user_token(13, exp=int(time.time()) + 2)}, join_ref="r")
        assert wire.recv()["ref"] == ref and wire.recv()["event"] == "system"
        ref = wire.send("realtime:refresh", "presence", {"type": "presence", "event": "track",
                                                         "payload": {"online": True}}, join_ref="r")
        assert wire.recv()["ref"] == ref
        assert wire.recv()["event"] == "presence_diff"  # its own join
        speaker.join("realtime:refresh", [])
        wire.send("realtime:refresh", "access_token", {"access_token": user_token(13)}, join_ref="r")
        time.sleep(2.5)  # past the first token's expiry
        tenants.execute("insert into docs (organization_id, owner, title) values (13, gen_random_uuid(), 'fresh')")
        assert wire.recv()["payload"]["data"]["record"]["title"] == "fresh"
        speaker.send("realtime:refresh", "broadcast", {"type": "broadcast", "event": "hi", "payload": {"n": 1}},
                     join_ref="j")
        assert wire.recv()["payload"] == {"type": "broadcast", "event": "hi", "payload": {"n": 1}}
    finally:
        wire.close()
        speaker.close()


def test_a_filter_or_select_on_a_hidden_column_is_refused(stack, tenants):
    # `secret` is not granted to authenticated: filtering on it would reveal it one event at a time.
    wire = Wire(stack.ws_url, user_token(1))
    control = docs_reader(stack, 1)  # the same table, the same token, no hidden column
    try:
        for binding in ({**DOCS, "filter": "secret=eq.s3cret"}, {**DOCS, "select": ["id", "secret"]}):
            reply, system = wire.join("realtime:oracle", [binding])
            assert reply["payload"]["status"] == "ok"
            assert system["payload"]["status"] == "error", system
        tenants.execute("insert into docs (organization_id, owner, title, secret) "
                        "values (1, gen_random_uuid(), 'a', 's3cret')")
        assert title(control.recv()) == "a"
        assert before_marker(wire, tenants) == []
        assert drain(wire, 0.8) == []
    finally:
        wire.close()
        control.close()


def test_a_failed_rejoin_leaves_nothing_subscribed(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        join_with(wire, "realtime:again", user_token(14))
        ref = wire.send("realtime:again", "phx_join", {"config": {"postgres_changes": [DOCS]},
                                                       "access_token": "forged.token.value"}, join_ref="again-2")
        reply = wire.recv()
        assert reply["ref"] == ref and reply["payload"]["status"] == "error"
        control = docs_reader(stack, 14)
        tenants.execute("insert into docs (organization_id, owner, title) values (14, gen_random_uuid(), 'x')")
        assert title(control.recv()) == "x"
        control.close()
        assert before_marker(wire, tenants) == []
        assert drain(wire) == []
    finally:
        wire.close()


def test_access_token_messages_reauthorize_or_close_the_channel(stack, tenants):
    wire = Wire(stack.ws_url, stack.key("anon"))
    old_org, new_org = docs_reader(stack, 21), docs_reader(stack, 22)  # the controls
    try:
        join_with(wire, "realtime:switch", user_token(21))
        wire.send("realtime:switch", "access_token", {"access_token": user_token(22)}, join_ref="realtime:switch")
        time.sleep(0.3)
        tenants.execute("insert into docs (organization_id, owner, title) values (21, gen_random_uuid(), 'old org')")
        tenants.execute("insert into docs (organization_id, owner, title) values (22, gen_random_uuid(), 'new org')")
        assert title(old_org.recv()) == "old org" and title(new_org.recv()) == "new org"
        assert [m["payload"]["data"]["record"]["title"] for m in drain(wire)] == ["new org"]

        wire.send("realtime:switch", "access_token", {"access_token": user_token(22, exp=int(time.time()) - 1)},
                  join_ref="realtime:switch")
        error, close = wire.recv(), wire.recv()
        assert error["event"] == "system" and error["payload"]["status"] == "error"
        assert error["payload"]["message"] == "InvalidJWTToken: Token has expired"
        assert close["event"] == "phx_close" and close["topic"] == "realtime:switch"
        tenants.execute("insert into docs (organization_id, owner, title) values (22, gen_random_uuid(), 'closed')")
        assert title(new_org.recv()) == "closed"
        assert before_marker(wire, tenants) == []
        assert drain(wire) == []
    finally:
        wire.close()
        old_org.close()
        new_org.close()


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
        control = docs_reader(stack, 41)
        tenants.execute("insert into docs (organization_id, owner, title) values (41, gen_random_uuid(), 'x')")
        assert title(control.recv()) == "x"
        control.close()
        assert before_marker(wire, tenants) == []
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


def test_private_channels_follow_realtime_messages_policies(stack, tenants, supabase_js):
    from tests.e2e.clients import JsRoom

    tenants.execute(PRIVATE_POLICIES)
    writer = JsRoom(stack.api_url, user_token(5, can_post=True), "team-5",
                    {"private": True, "broadcast": {"ack": True}}, client=supabase_js)
    reader = Wire(stack.ws_url, user_token(5))
    outsider = Wire(stack.ws_url, user_token(6))
    public = Wire(stack.ws_url, user_token(5))
    poster = Wire(stack.ws_url, user_token(5, can_post=True))  # the control: a member who may write
    try:
        writer.wait_for("status", status="SUBSCRIBED")
        reply, _ = reader.join("realtime:team-5", [], private=True, broadcast={"ack": True})
        poster.join("realtime:team-5", [], private=True)
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
        # Sent after the refusal was answered, a permitted memo is the first broadcast to reach the writer.
        poster.send("realtime:team-5", "broadcast", {"type": "broadcast", "event": "memo", "payload": {"n": 2}},
                    join_ref="jrealtime:team-5")
        assert writer.wait_for("broadcast")["message"]["payload"] == {"n": 2}
        with pytest.raises(TimeoutError):
            writer.wait_for("broadcast", timeout=1.0)
        assert drain(public, 0.5) == [] and drain(outsider, 0.2) == []
        assert tenants.execute("select count(*) from realtime.messages").fetchone()[0] == 0
    finally:
        writer.close()
        for w in (reader, outsider, public, poster):
            w.close()


def test_a_batch_under_rls_is_one_authorization_round_trip_shared_by_identical_claims(stack, tenants):
    users = [str(uuid.uuid4()) for _ in range(6)]
    twin = users[0]
    tokens = [user_token(1, sub=u) for u in users]
    # Three connections of the first user with the very same token: one principal, one evaluation.
    wires = [Wire(stack.ws_url, t) for t in tokens] + [Wire(stack.ws_url, tokens[0]) for _ in range(2)]
    owners = users + [twin, twin]
    try:
        for wire in wires:
            wire.join("realtime:diaries", [{"event": "INSERT", "schema": "public", "table": "diary"}])
        stack.bridge.results.clear()
        with tenants.transaction():
            for n, user in enumerate(users):
                tenants.execute("insert into diary (owner, body) values (%s, %s)", (user, f"entry {n}"))
                # Broadcast rows between the changes: still one authorization for the batch.
                tenants.execute("select realtime.send('{}'::jsonb, 'tick', 'nobody-listens', false)")
        for wire, owner in zip(wires, owners):
            assert [wire.recv()["payload"]["data"]["record"]["body"]] == [f"entry {users.index(owner)}"]
            assert drain(wire, 0.3) == []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(r["changes"] for r in stack.bridge.results):
            time.sleep(0.1)
        batch, = [r for r in stack.bridge.results if r["changes"]]
        assert batch["changes"] == 12 and batch["batches"] == 1
        # pending rows under the drain lock, one authorization of every principal and row, ack
        assert batch["pg_round_trips"] == 3
        # six distinct users (the twins share one), each checked against the six new rows
        assert batch["principals"] == 6 and batch["checks"] == 36
        assert batch["posts"] == 8
    finally:
        for wire in wires:
            wire.close()


def test_private_writes_are_checked_on_the_first_send_and_reads_again_on_a_new_token(stack, tenants):
    tenants.execute(PRIVATE_POLICIES)
    tenants.execute("drop policy if exists team_write on realtime.messages")  # nobody may write yet
    writer, reader = Wire(stack.ws_url, user_token(9, can_post=True)), Wire(stack.ws_url, user_token(9))
    poster = Wire(stack.ws_url, user_token(9, can_post=True))  # the control: another member who may write
    try:
        reply, _ = writer.join("realtime:team-9", [], private=True)
        assert reply["payload"]["status"] == "ok"
        reader.join("realtime:team-9", [], private=True)
        poster.join("realtime:team-9", [], private=True)
        # The write policy appears after the join: the first send is what is checked.
        tenants.execute(PRIVATE_POLICIES)
        writer.send("realtime:team-9", "broadcast", {"type": "broadcast", "event": "memo", "payload": {"n": 1}},
                    join_ref="jrealtime:team-9")
        assert reader.recv()["payload"]["payload"] == {"n": 1}
        # The reader may not write: without ack its message is dropped without a word.
        reader.send("realtime:team-9", "broadcast", {"type": "broadcast", "event": "memo", "payload": {"n": 2}},
                    join_ref="jrealtime:team-9")
        assert heartbeat(reader) == []  # the router is done with the dropped message
        assert poster.recv()["payload"]["payload"] == {"n": 1}
        # A permitted memo sent after it reaches both, with nothing before it.
        poster.send("realtime:team-9", "broadcast", {"type": "broadcast", "event": "memo", "payload": {"n": 2.5}},
                    join_ref="jrealtime:team-9")
        assert writer.recv()["payload"]["payload"] == {"n": 2.5} and reader.recv()["payload"]["payload"] == {"n": 2.5}
        assert drain(writer, 0.8) == [] and drain(reader, 0.2) == []

        # A new token for another team no longer reads team-9: the channel is closed.
        reader.send("realtime:team-9", "access_token", {"access_token": user_token(10)},
                    join_ref="jrealtime:team-9")
        assert_closed(reader, "realtime:team-9",
                      "Unauthorized: You do not have permissions to read from this Channel topic: team-9")
        writer.send("realtime:team-9", "broadcast", {"type": "broadcast", "event": "memo", "payload": {"n": 3}},
                    join_ref="jrealtime:team-9")
        assert poster.recv()["payload"]["payload"] == {"n": 3}
        assert heartbeat(writer) == []  # the router is done relaying {"n": 3}
        assert drain(reader, 0.8) == []
    finally:
        writer.close()
        reader.close()
        poster.close()


def test_supabase_js_signed_in_user_sees_only_its_tenant_through_every_change(stack, tenants, supabase_js):
    from tests.e2e.clients import JsListener

    js = JsListener(stack.api_url, stack.key("anon"), [DOCS], vsn="1.0.0", channel="docs-js",
                    user_jwt=user_token(15), client=supabase_js)
    control = docs_reader(stack, 16)  # the other tenant sees every change that js must not
    try:
        js.wait_for("status", status="SUBSCRIBED")
        js.wait_for("system")
        mine = tenants.execute("insert into docs (organization_id, owner, title, secret) "
                               "values (15, gen_random_uuid(), 'ours', 'hidden') returning id").fetchone()[0]
        theirs = tenants.execute("insert into docs (organization_id, owner, title) "
                                 "values (16, gen_random_uuid(), 'theirs') returning id").fetchone()[0]
        tenants.execute("update docs set title = 'renamed' where id = %s", (theirs,))
        tenants.execute("update docs set organization_id = 16, title = 'moved away' where id = %s", (mine,))
        tenants.execute("delete from docs where id in (%s, %s)", (mine, theirs))
        insert, = js.changes(1)
        assert insert["payload"]["eventType"] == "INSERT" and insert["payload"]["new"]["title"] == "ours"
        assert "secret" not in insert["payload"]["new"]
        seen = [control.recv()["payload"]["data"] for _ in range(5)]
        assert [(d["type"], d.get("record", {}).get("title")) for d in seen] == [
            ("INSERT", "theirs"), ("UPDATE", "renamed"), ("UPDATE", "moved away"), ("DELETE", None), ("DELETE", None)]
        assert [line for line in js.quiet(1.5) if line["kind"] == "change"] == []

        # The app signs in as a user of the other tenant: the channel now follows the new claims.
        js.set_auth(user_token(16))
        time.sleep(0.3)
        old_tenant = docs_reader(stack, 15)
        tenants.execute("insert into docs (organization_id, owner, title) values (15, gen_random_uuid(), 'old')")
        tenants.execute("insert into docs (organization_id, owner, title) values (16, gen_random_uuid(), 'new')")
        change, = js.changes(1)
        assert change["payload"]["new"]["title"] == "new"
        assert title(old_tenant.recv()) == "old"
        old_tenant.close()
        assert [line for line in js.quiet(1.0) if line["kind"] == "change"] == []
    finally:
        js.close()
        control.close()


def test_realtime_py_owner_policy_covers_updates_and_deletes(stack, tenants):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    py = PyListener(stack.api_url, user_token(1, sub=me), [{"event": "*", "schema": "public", "table": "diary"}],
                    channel="diary-py")
    control = Wire(stack.ws_url, user_token(1, sub=other))  # the other owner
    control.join("realtime:diary", [{"event": "*", "schema": "public", "table": "diary"}])
    try:
        row = tenants.execute("insert into diary (owner, body) values (%s, 'mine') returning id", (me,)).fetchone()[0]
        tenants.execute("insert into diary (owner, body) values (%s, 'not mine')", (other,))
        tenants.execute("update diary set body = 'given away', owner = %s where id = %s", (other, row))
        tenants.execute("delete from diary where owner = %s", (other,))
        (_, insert), = py.changes(1)
        assert insert["data"]["type"] == "INSERT" and insert["data"]["record"]["body"] == "mine"
        # The row left my view with the update and was deleted out of it: neither reaches me.
        assert [control.recv()["payload"]["data"]["type"] for _ in range(4)] == ["INSERT", "UPDATE", "DELETE", "DELETE"]
        assert py.quiet(1.5) == []
    finally:
        py.close()
        control.close()


def test_a_server_broadcast_tells_an_expired_member_too(stack, tenants):
    short = Wire(stack.ws_url, stack.key("anon"))
    try:
        ref = short.send("realtime:notice", "phx_join", {"config": {},
                                                         "access_token": user_token(17, exp=int(time.time()) + 2)},
                         join_ref="n")
        assert short.recv()["ref"] == ref
        time.sleep(2.5)
        tenants.execute("select realtime.send('{\"n\": 1}'::jsonb, 'notice', 'notice', false)")
        assert_closed(short, "realtime:notice", "Token has expired")
    finally:
        short.close()
