"""The inbox over REST and realtime: seen, read and archived states, filters, mark-all routes,
badge counts, and the counts pushed live to an unmodified supabase-js client."""
from __future__ import annotations

import uuid

from tests.e2e.clients import JsListener
from tests.e2e.test_notifications import user_token
from tests.e2e.test_notifications_api import call_json


def inbox(db, user, n: int) -> list[str]:
    return [str(db.execute("insert into notifications (user_id, type, title, message) "
                           "values (%s, %s, 't', 'm') returning id",
                           (user, f"kind.{i % 2}")).fetchone()[0]) for i in range(n)]


def listed(stack, token, query="") -> list[str]:
    status, page = call_json(stack, "GET", f"/api/notifications?{query}", token=token)
    assert status == 200, page
    return sorted(item["id"] for item in page["items"])


def test_seen_read_and_archived_states_filter_and_count(stack, db):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    ids = inbox(db, me, 4)
    inbox(db, other, 2)
    token = user_token(me)
    assert call_json(stack, "GET", "/api/notifications/counts", token=token) == (
        200, {"unseen": 4, "unread": 4})

    status, item = call_json(stack, "PATCH", f"/api/notifications/{ids[0]}", token=token,
                             body={"seen": True})
    assert status == 200 and item["seen_at"] and item["read_at"] is None
    status, item = call_json(stack, "PATCH", f"/api/notifications/{ids[1]}", token=token,
                             body={"read": True})
    assert item["read_at"] and item["seen_at"]  # reading is seeing
    status, item = call_json(stack, "PATCH", f"/api/notifications/{ids[2]}", token=token,
                             body={"archived": True})
    assert item["archived_at"]
    assert call_json(stack, "GET", "/api/notifications/counts", token=token)[1] == {
        "unseen": 1, "unread": 2}

    assert listed(stack, token) == sorted([ids[0], ids[1], ids[3]])
    assert listed(stack, token, "archived=true") == [ids[2]]
    assert listed(stack, token, "seen=false") == [ids[3]]
    assert listed(stack, token, "seen=true&read=false") == [ids[0]]
    assert listed(stack, token, "type=kind.0&archived=false") == [ids[0]]

    status, item = call_json(stack, "PATCH", f"/api/notifications/{ids[1]}", token=token,
                             body={"read": False, "seen": False})
    assert item["read_at"] is None and item["seen_at"] is None
    status, item = call_json(stack, "PATCH", f"/api/notifications/{ids[2]}", token=token,
                             body={"archived": False})
    assert item["archived_at"] is None
    assert call_json(stack, "PATCH", f"/api/notifications/{ids[2]}", token=token, body={})[0] == 422

    assert call_json(stack, "POST", "/api/notifications/mark-all-seen", token=token) == (
        200, {"updated": 3})
    assert call_json(stack, "GET", "/api/notifications/counts", token=token)[1] == {
        "unseen": 0, "unread": 4}
    assert call_json(stack, "POST", "/api/notifications/mark-all-archived", token=token) == (
        200, {"updated": 4})
    assert listed(stack, token) == [] and len(listed(stack, token, "archived=true")) == 4
    assert call_json(stack, "GET", "/api/notifications/counts", token=token)[1] == {
        "unseen": 0, "unread": 0}
    # Control: the other user's inbox is untouched by all of it.
    assert call_json(stack, "GET", "/api/notifications/counts", token=user_token(other))[1] == {
        "unseen": 2, "unread": 2}
    assert db.execute("select unseen, unread from notification_badges where user_id = %s",
                      (me,)).fetchone() == (0, 0)
    status, _ = call_json(stack, "GET", "/api/notifications/counts",
                          token=stack.key("service_role"))
    assert status == 403


def test_badge_counts_are_pushed_live_to_supabase_js(stack, db):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    inbox(db, other, 1)
    badge = {"event": "*", "schema": "public", "table": "notification_badges",
             "filter": f"user_id=eq.{me}"}
    js = JsListener(stack.api_url, stack.key("anon"), [badge], channel=f"badge:{me}",
                    user_jwt=user_token(me))
    # Another user asking for my badge: RLS lets them read only their own row.
    snoop = JsListener(stack.api_url, stack.key("anon"), [badge], channel=f"snoop:{me}",
                       user_jwt=user_token(other))
    try:
        js.wait_for("status", status="SUBSCRIBED")
        snoop.wait_for("status", status="SUBSCRIBED")
        first = inbox(db, me, 1)[0]
        change = js.wait_for("change")["payload"]
        assert change["eventType"] == "INSERT" and change["table"] == "notification_badges"
        assert {k: change["new"][k] for k in ("user_id", "unseen", "unread")} == {
            "user_id": me, "unseen": 1, "unread": 1}
        inbox(db, me, 2)
        counts = [js.wait_for("change")["payload"]["new"] for _ in range(2)]
        assert [(c["unseen"], c["unread"]) for c in counts] == [(2, 2), (3, 3)]
        assert call_json(stack, "POST", "/api/notifications/mark-all-seen",
                         token=user_token(me))[1] == {"updated": 3}
        change = js.wait_for("change")["payload"]
        assert change["eventType"] == "UPDATE" and (change["new"]["unseen"],
                                                    change["new"]["unread"]) == (0, 3)
        db.execute("update notifications set read_at = now() where id = %s", (first,))
        assert js.wait_for("change")["payload"]["new"]["unread"] == 2
        # Another user's counts changing reaches no one else; a change of our own, after it,
        # arrives first, so nothing was held back in between.
        # Deleting a read, seen notification changes no count: nothing is pushed for it.
        inbox(db, other, 1)
        db.execute("delete from notifications where id = %s", (first,))
        inbox(db, me, 1)
        change = js.wait_for("change")["payload"]["new"]
        assert (change["user_id"], change["unseen"], change["unread"]) == (me, 1, 3)
        assert not [line for line in js.skipped if line["kind"] == "change"]
        assert not [line for line in snoop.quiet(0.5) if line["kind"] == "change"]
    finally:
        js.close()
        snoop.close()
