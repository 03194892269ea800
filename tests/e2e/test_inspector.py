"""The Realtime Inspector's JSON API on a running stack: what it lists, and explain delivery
agreeing with what the fanout then actually delivers."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from ripple.local.token import user_token
from tests.e2e.wire import Wire

pytestmark = pytest.mark.e2e

SCHEMA = """
create table if not exists public.insp_notes (
  id bigint generated always as identity primary key,
  org int not null,
  owner uuid not null,
  body text not null,
  secret text
);
alter table public.insp_notes enable row level security;
revoke all on public.insp_notes from anon, authenticated;
grant select (id, org, owner, body) on public.insp_notes to authenticated;
drop policy if exists insp_by_org on public.insp_notes;
create policy insp_by_org on public.insp_notes for select to authenticated
  using (org = (auth.jwt() ->> 'org')::int);
do $$ begin
  if not exists (select 1 from pg_publication_tables where tablename = 'insp_notes') then
    alter publication supabase_realtime add table public.insp_notes; end if;
end $$;
"""
TABLE = {"schema": "public", "table": "insp_notes"}


def api(stack, path: str, body: dict | None = None, token: str | None = None) -> Any:
    request = urllib.request.Request(
        stack.inspector_url + path, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def subscriber(stack, name: str, org: int, sub: str, *, event: str = "*", filter: str | None = None,
               ttl: int = 3600) -> Wire:
    wire = Wire(stack.ws_url, stack.key("anon"))
    token = user_token(sub, extra={"org": org}, ttl_seconds=ttl)
    binding = {"event": event, **TABLE, **({"filter": filter} if filter else {})}
    ref = wire.send(f"realtime:{name}", "phx_join",
                    {"config": {"postgres_changes": [binding]}, "access_token": token}, join_ref="1")
    reply = wire.recv()
    assert reply["ref"] == ref and reply["payload"]["status"] == "ok", reply
    system = wire.recv()
    assert system["event"] == "system" and system["payload"]["status"] == "ok", system
    return wire


def changes(wire: Wire, seconds: float) -> list[dict]:
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = wire.recv(timeout=left)
        except TimeoutError:
            break
        if frame["event"] == "postgres_changes":
            out.append(frame)
    return out


@pytest.fixture
def notes(db):
    db.execute(SCHEMA)
    return db


def test_explain_lists_every_binding_with_the_fanouts_verdict_and_matches_delivery(stack, notes) -> None:
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())
    subs = {
        "reader": subscriber(stack, "insp-reader", 1, str(uuid.uuid4())),
        "other-org": subscriber(stack, "insp-other-org", 2, str(uuid.uuid4())),
        "deletes-only": subscriber(stack, "insp-deletes", 1, str(uuid.uuid4()), event="DELETE"),
        "other-owner": subscriber(stack, "insp-other-owner", 1, str(uuid.uuid4()), filter=f"owner=eq.{other}"),
        "expiring": subscriber(stack, "insp-expiring", 1, str(uuid.uuid4()), ttl=2),
    }
    try:
        time.sleep(2.5)  # the expiring subscriber's token runs out
        row = {"id": 1, "org": 1, "owner": owner, "body": "hello", "secret": "s3cret"}
        answer = api(stack, "/api/explain", {**TABLE, "type": "INSERT", "record": row})
        mine = {s["topic"].removeprefix("realtime:"): s for s in answer["subscribers"]
                if s["topic"].startswith("realtime:insp-")}
        assert set(mine) == {"insp-reader", "insp-other-org", "insp-deletes", "insp-other-owner",
                             "insp-expiring"}
        reader = mine["insp-reader"]
        assert reader["receives"] and reader["because"] == "receives it"
        assert reader["checks"]["columns"]["hidden"] == ["secret"]
        assert reader["record"] == {"id": 1, "org": 1, "owner": owner, "body": "hello"}
        assert mine["insp-other-org"]["because"].startswith("rls: ")
        assert mine["insp-other-org"]["checks"]["event"]["ok"] and mine["insp-other-org"]["checks"]["filter"]["ok"]
        assert mine["insp-deletes"]["because"].startswith("event: listens to DELETE")
        assert mine["insp-other-owner"]["because"].startswith(f"filter: owner=eq.{other} does not match")
        assert mine["insp-expiring"]["because"].startswith("token: expired")
        assert not any(mine[n]["receives"] for n in mine if n != "insp-reader")

        # The real write: exactly the explained subscriber receives it, without the hidden column.
        notes.execute("insert into public.insp_notes (org, owner, body, secret) values (1, %s, 'hello', 's3cret')",
                      (owner,))
        got = changes(subs["reader"], 5)
        assert len(got) == 1 and "secret" not in got[0]["payload"]["data"]["record"]
        for name in ("other-org", "deletes-only", "other-owner"):
            assert changes(subs[name], 0.5) == [], name

        # An existing row, looked up by column, explains the same way.
        by_row = api(stack, "/api/explain", {**TABLE, "type": "UPDATE", "where": {"owner": owner}})
        assert [s["topic"] for s in by_row["subscribers"] if s["receives"]] == ["realtime:insp-reader"]

        state = wait_for_state(stack, lambda s: any(
            e["table"] == "insp_notes" and e["acked"] for e in s["outbox"]))
        entry = next(e for e in state["outbox"] if e["table"] == "insp_notes")
        assert entry["op"] == "INSERT" and entry["id"] is not None
        assert [d["topic"] for d in entry["deliveries"]] == ["realtime:insp-reader"]
        assert all(v is not None for v in entry["latency_ms"].values()), entry
        # The drained entry can be explained by its outbox id.
        by_id = api(stack, "/api/explain", {"outbox_id": entry["id"]})
        assert by_id["change"]["record"]["body"] == "hello"
        assert any(s["topic"] == "realtime:insp-reader" and s["receives"] for s in by_id["subscribers"])
    finally:
        for wire in subs.values():
            wire.close()


def wait_for_state(stack, ready, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = api(stack, "/api/state")
        if ready(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def test_state_lists_connections_channels_presence_and_refusals(stack, notes) -> None:
    sub = str(uuid.uuid4())
    wire = subscriber(stack, "insp-listed", 1, sub)
    refused = Wire(stack.ws_url, stack.key("anon"))
    try:
        ref = refused.send("realtime:insp-refused", "phx_join",
                           {"config": {"postgres_changes": []}, "access_token": "not-a-jwt"}, join_ref="1")
        reply = refused.recv()
        assert reply["ref"] == ref and reply["payload"]["status"] == "error"
        wire.send("realtime:insp-listed", "presence",
                  {"type": "presence", "event": "track", "payload": {"name": "Ada"}}, join_ref="1")
        state = wait_for_state(stack, lambda s: any(
            ch.get("presence") for c in s["connections"] for ch in c["channels"] if ch["topic"] == "realtime:insp-listed")
            and any(r["topic"] == "realtime:insp-refused" for r in s["refusals"]))
        listed = next(c for c in state["connections"]
                      if any(ch["topic"] == "realtime:insp-listed" for ch in c["channels"]))
        channel = next(ch for ch in listed["channels"] if ch["topic"] == "realtime:insp-listed")
        assert listed["role"] == "anon" and channel["sub"] == sub and channel["role"] == "authenticated"
        assert [b["table"] for b in channel["bindings"]] == ["insp_notes"]
        assert channel["presence"] == {"name": "Ada"} or channel["presence"].get("name") == "Ada"
        assert listed["last_heard"] > 0
        refusal = next(r for r in state["refusals"] if r["topic"] == "realtime:insp-refused")
        assert refusal["kind"] == "join" and refusal["code"] == "InvalidJWTToken", refusal
        frames = api(stack, f"/api/frames/{listed['connection_id']}")
        assert {f["event"] for f in frames} >= {"phx_join", "phx_reply"}
    finally:
        wire.close()
        refused.close()


def test_rows_are_read_as_the_tokens_user_and_bad_requests_are_refused(stack, notes) -> None:
    notes.execute("insert into public.insp_notes (org, owner, body) values (7, gen_random_uuid(), 'seven')")
    seven = api(stack, "/api/rows?table=public.insp_notes", token=user_token(str(uuid.uuid4()), extra={"org": 7}))
    eight = api(stack, "/api/rows?table=public.insp_notes", token=user_token(str(uuid.uuid4()), extra={"org": 8}))
    assert [r["body"] for r in seven] == ["seven"] and eight == []
    token = api(stack, "/api/token", {"role": "service_role", "claims": {}})["token"]
    assert token.count(".") == 2
    for body, message in [({"table": "no_such_table"}, "no table public.no_such_table"),
                          ({"schema": "public", "table": "insp_notes", "type": "UPSERT", "record": {}},
                           "type must be one of"),
                          ({"outbox_id": 987654321}, "no change with outbox id")]:
        with pytest.raises(urllib.error.HTTPError) as error:
            api(stack, "/api/explain", body)
        assert error.value.code == 400 and message in json.load(error.value)["message"]
    with pytest.raises(urllib.error.HTTPError) as error:
        api(stack, "/api/rows?table=public.insp_notes", token="bad")
    assert error.value.code == 401
