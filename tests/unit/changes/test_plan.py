"""The fanout's planning on the in-memory store: which binding gets which frame, filtered and
authorized the way the drain does it, each distinct frame encoded once."""
from __future__ import annotations

import json

from ripple.changes.change import Change
from ripple.changes.plan import plan
from ripple.store import Binding, MemoryStore, eq_key, table_key

COLUMNS = [{"name": "id", "type": "int8"}, {"name": "owner", "type": "text"}, {"name": "secret", "type": "text"}]


def change(cid: int, op: str = "INSERT", owner: str = "ann", old: dict | None = None) -> Change:
    record = {"id": cid, "owner": owner, "secret": "s"}
    return Change(id=cid, schema="public", table="notes", type=op, record=record, old_record=old,
                  columns=COLUMNS, commit_timestamp="2026-12-01T00:00:00.000Z")


def bind(store: MemoryStore, connection_id: str, *, flt: str | None = None, event: str = "*",
         role: str = "anon", exp: int = 0, bucket: str | None = None, select=None) -> Binding:
    binding = Binding(connection_id=connection_id, topic="realtime:notes", id=7, event=event,
                      schema="public", table="notes", bucket=bucket or table_key("public", "notes"),
                      vsn="1.0.0", filter=flt, select=select, role=role,
                      claims=json.dumps({"role": role}), exp=exp)
    indexed = {table_key("public", "notes"): {"owner"}} if bucket and "|" in bucket else {}
    store.add_bindings([binding], indexed, 2**31)
    return binding


class Policies:
    """realtime.authorize's answer: `allow(role, row)` plays the RLS policy; counts round trips."""

    def __init__(self, roles: set[str], hidden: dict[str, list[str]] | None = None, allow=None):
        self.allow = allow or (lambda role, row: role in roles)
        self.hidden, self.calls = hidden or {}, 0

    def __call__(self, request: dict) -> list[dict]:
        self.calls += 1
        return [{"principal": principal, "image": image,
                 "allowed": self.allow(request["principals"][principal]["role"], request["images"][image]["row"]),
                 "hidden": self.hidden.get(request["principals"][principal]["role"], [])}
                for principal, image in request["checks"]]


def frames_of(planned, index: int) -> dict[str, dict]:
    return {cid: json.loads(frame) for cid, frame in planned.frames[index]}


def test_each_matching_binding_gets_one_frame_and_others_none():
    store = MemoryStore()
    bind(store, "all")
    bind(store, "anns", flt="owner=eq.ann")
    bind(store, "bobs", flt="owner=eq.bob")
    bind(store, "deletes", event="DELETE")
    planned = plan([change(1)], store, Policies({"anon"}))
    got = frames_of(planned, 0)
    assert set(got) == {"all", "anns"}
    assert got["all"]["event"] == "postgres_changes"
    assert got["all"]["payload"]["ids"] == [7]
    assert got["all"]["payload"]["data"]["record"] == {"id": 1, "owner": "ann", "secret": "s"}


def test_eq_buckets_are_found_through_the_registry():
    store = MemoryStore()
    bind(store, "anns", flt="owner=eq.ann", bucket=eq_key("public", "notes", "owner", "ann"))
    bind(store, "bobs", flt="owner=eq.bob", bucket=eq_key("public", "notes", "owner", "bob"))
    planned = plan([change(1, owner="bob"), change(2, owner="ann")], store, Policies({"anon"}))
    assert [set(frames_of(planned, i)) for i in range(2)] == [{"bobs"}, {"anns"}]


def test_rls_verdicts_drop_deny_and_hide_columns_with_one_round_trip():
    store = MemoryStore()
    bind(store, "reader", role="authenticated")
    bind(store, "outsider", role="anon")
    policies = Policies({"authenticated"}, hidden={"authenticated": ["secret"]})
    planned = plan([change(1), change(2)], store, policies)
    assert policies.calls == 1
    assert [set(frames_of(planned, i)) for i in range(2)] == [{"reader"}, {"reader"}]
    data = frames_of(planned, 0)["reader"]["payload"]["data"]
    assert data["record"] == {"id": 1, "owner": "ann"}
    assert [c["name"] for c in data["columns"]] == ["id", "owner"]
    assert planned.principals == 2


def test_an_old_image_the_subscriber_may_not_see_is_emptied():
    store = MemoryStore()
    bind(store, "reader", role="authenticated")
    update = change(1, op="UPDATE", old={"id": 1, "owner": "bob", "secret": "s"})
    own_rows = Policies(set(), allow=lambda role, row: row["owner"] == "ann")
    planned = plan([update], store, own_rows)
    data = frames_of(planned, 0)["reader"]["payload"]["data"]
    assert data["record"]["owner"] == "ann" and data["old_record"] == {}


def test_subscribers_sharing_a_view_share_one_encoded_frame():
    store = MemoryStore()
    for n in range(3):
        bind(store, f"c{n}")
    (frames,) = plan([change(1)], store, Policies({"anon"})).frames
    assert len(frames) == 3 and len({id(frame) for _, frame in frames}) == 1


def test_an_expired_binding_gets_nothing_and_is_named_for_closing():
    store = MemoryStore()
    bind(store, "live")
    bind(store, "stale", exp=1)
    planned = plan([change(1)], store, Policies({"anon"}))
    assert set(frames_of(planned, 0)) == {"live"}
    assert [(e.connection_id, e.topic) for e in planned.expired] == [("stale", "realtime:notes")]


def test_no_candidates_means_no_authorization_round_trip():
    policies = Policies({"anon"})
    assert plan([change(1)], MemoryStore(), policies).frames == [[]]
    assert policies.calls == 0


def test_a_change_too_large_for_one_message_is_cut_the_supabase_way():
    store = MemoryStore()
    bind(store, "reader")
    big = Change(id=1, schema="public", table="notes", type="UPDATE",
                 record={"id": 1, "owner": "ann", "secret": "x" * 200_000},
                 old_record={"id": 1, "owner": "ann", "secret": "y" * 64},
                 columns=COLUMNS, commit_timestamp="2026-12-01T00:00:00.000Z")
    planned = plan([big, change(2)], store, Policies({"anon"}))
    (cut,) = planned.frames[0]
    assert len(cut[1].encode()) < 128 * 1024
    data = json.loads(cut[1])["payload"]["data"]
    assert data["errors"] == ["Error 413: Payload Too Large"]
    assert data["record"] == {"id": 1, "owner": "ann"}
    assert data["old_record"] == {"id": 1, "owner": "ann"}  # "y"*64 is 66 bytes of JSON
    assert frames_of(planned, 1)["reader"]["payload"]["data"]["errors"] is None


def test_a_raising_policy_withholds_from_its_principal_only_and_tells_each_channel_once():
    store = MemoryStore()
    bind(store, "fine", role="authenticated")
    bind(store, "broken", role="anon")

    def authorize(request: dict) -> list[dict]:
        rows = []
        for principal, image in request["checks"]:
            raised = request["principals"][principal]["role"] == "anon"
            rows.append({"principal": principal, "image": image, "allowed": not raised, "hidden": None,
                         "error": "22P02" if raised else None,
                         "reason": 'invalid input syntax for type integer: "s3cret"' if raised else None})
        return rows

    planned = plan([change(1), change(2, op="UPDATE", old={"id": 2, "owner": "ann", "secret": "t"})],
                   store, authorize)
    assert [set(frames_of(planned, i)) for i in range(2)] == [{"fine"}, {"fine"}]
    assert planned.policy_errors == 3  # the INSERT's image, the UPDATE's new and old images
    (connection, frame), = planned.refused  # once for the channel and table, not per change
    told = json.loads(frame)
    assert connection == "broken" and told["event"] == "system" and told["topic"] == "realtime:notes"
    assert told["payload"]["status"] == "error" and told["payload"]["extension"] == "postgres_changes"
    assert "SQLSTATE 22P02" in told["payload"]["message"] and "s3cret" not in told["payload"]["message"]


def test_an_old_image_that_raises_still_delivers_the_change_without_it():
    store = MemoryStore()
    bind(store, "reader", role="authenticated")

    def authorize(request: dict) -> list[dict]:
        return [{"principal": p, "image": i, "allowed": i == 0, "hidden": None,
                 "error": None if i == 0 else "22012", "reason": None if i == 0 else "division by zero"}
                for p, i in request["checks"]]

    planned = plan([change(1, op="UPDATE", old={"id": 1, "owner": "ann", "secret": "s"})], store, authorize)
    data = frames_of(planned, 0)["reader"]["payload"]["data"]
    assert data["record"]["id"] == 1 and data["old_record"] == {}
    assert planned.policy_errors == 1 and [c for c, _ in planned.refused] == ["reader"]
