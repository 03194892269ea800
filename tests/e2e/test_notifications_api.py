"""The notifications REST API over HTTP: a user's inbox, creating notifications, unsubscribing."""
from __future__ import annotations

import html
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from ripple.local.stack import DEV_JWT_SECRET
from ripple.notify.unsubscribe import make_token


def user_token(sub: str, expires_in: int = 600) -> str:
    return jwt.encode({"role": "authenticated", "sub": sub, "exp": int(time.time()) + expires_in},
                      DEV_JWT_SECRET, algorithm="HS256")


def call(stack, method: str, path: str, token: str | None = None, body: object = None,
         raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; JSON-encodes `body` unless `raw` is given."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(stack.api_url + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def call_json(stack, method: str, path: str, **kwargs) -> tuple[int, object]:
    status, _, payload = call(stack, method, path, **kwargs)
    return status, json.loads(payload) if payload else None


@pytest.fixture
def users(db):
    """Users A and B of one organization (B an admin), each with one in-app notification, and a
    user C of another organization."""
    org, other_org = str(uuid.uuid4()), str(uuid.uuid4())
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    for user, organization, role in ((a, org, "student"), (b, org, "admin"), (c, other_org, "admin")):
        db.execute("insert into profiles (id, organization_id, role, full_name) "
                   "values (%s, %s, %s, 'U')", (user, organization, role))
    ids = {}
    for user in (a, b):
        ids[user] = str(db.execute(
            "insert into notifications (organization_id, user_id, type, title, message) "
            "values (%s, %s, 'welcome', 'Hi', 'Welcome') returning id", (org, user)).fetchone()[0])
    return {"org": org, "other_org": other_org, "a": a, "b": b, "c": c, "ids": ids, "db": db}


def test_a_user_pages_through_only_their_own_inbox(stack, db):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    # Groups of three share a created_at, so the id must break ties for the cursor to be stable.
    db.execute("insert into notifications (user_id, type, title, message, created_at) "
               "select %s, 'note', 'n' || g, 'm', now() - (g / 3) * interval '1 second' "
               "from generate_series(1, 25) g", (me,))
    db.execute("insert into notifications (user_id, type, title, message) "
               "values (%s, 'note', 'x', 'm')", (other,))
    db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
               "values (%s, 'note', 'email only', 'm', '{email}')", (me,))
    expected = [str(r[0]) for r in db.execute(
        "select id from notifications where user_id = %s and 'in_app' = any (delivery_method) "
        "order by created_at desc, id desc", (me,)).fetchall()]

    seen, cursor, pages = [], None, 0
    while True:
        path = "/api/notifications?limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, page = call_json(stack, "GET", path, token=user_token(me))
        assert status == 200
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == expected and len(expected) == 25

    status, page = call_json(stack, "GET", "/api/notifications", token=user_token(me))
    assert status == 200 and len(page["items"]) == 20 and page["next_cursor"]
    item = page["items"][0]
    assert set(item) == {"id", "type", "title", "message", "priority", "delivery_method", "action_url",
                         "data", "read_at", "seen_at", "archived_at", "created_at"}


def test_type_and_read_filters(stack, db):
    me = str(uuid.uuid4())
    for kind, read in (("invoice.paid", True), ("invoice.paid", False), ("server.down", False)):
        db.execute("insert into notifications (user_id, type, title, message, read_at) "
                   "values (%s, %s, 't', 'm', case when %s then now() end)", (me, kind, read))
    token = user_token(me)

    def listed(query):
        status, page = call_json(stack, "GET", "/api/notifications?" + query, token=token)
        assert status == 200
        return sorted((i["type"], i["read_at"] is not None) for i in page["items"])

    assert listed("type=invoice.paid") == [("invoice.paid", False), ("invoice.paid", True)]
    assert listed("read=false") == [("invoice.paid", False), ("server.down", False)]
    assert listed("read=true") == [("invoice.paid", True)]
    assert listed("type=invoice.paid&read=false") == [("invoice.paid", False)]
    assert listed("type=nothing") == []


def test_a_user_marks_and_deletes_only_their_own(stack, users):
    a, b, ids, db = users["a"], users["b"], users["ids"], users["db"]
    token = user_token(a)
    for method, body in (("PATCH", {"read": True}), ("DELETE", None)):
        status, answer = call_json(stack, method, f"/api/notifications/{ids[b]}", token=token, body=body)
        assert status == 404 and "Not Found" in answer["message"]
    assert db.execute("select read_at from notifications where id = %s", (ids[b],)).fetchone() == (None,)

    own = f"/api/notifications/{ids[a]}"
    status, item = call_json(stack, "PATCH", own, token=token, body={"read": True})
    assert status == 200 and item["id"] == ids[a] and item["read_at"]
    status, again = call_json(stack, "PATCH", own, token=token, body={"read": True})
    assert again["read_at"] == item["read_at"]  # marking read twice keeps the first time
    status, item = call_json(stack, "PATCH", own, token=token, body={"read": False})
    assert status == 200 and item["read_at"] is None

    assert call(stack, "DELETE", own, token=token)[0] == 204
    assert call(stack, "DELETE", own, token=token)[0] == 404
    assert db.execute("select count(*) from notifications where id = any(%s)",
                      ([ids[a], ids[b]],)).fetchone() == (1,)
    for bad in ("not-a-uuid", "mark-all-read"):
        assert call(stack, "DELETE", f"/api/notifications/{bad}", token=token)[0] == 404


def test_mark_all_read_counts_the_callers_unread_only(stack, users, db):
    a, b = users["a"], users["b"]
    db.execute("insert into notifications (user_id, type, title, message, read_at) "
               "values (%s, 'x', 't', 'm', null), (%s, 'x', 't', 'm', now())", (a, a))
    mark_all = "/api/notifications/mark-all-read"
    assert call_json(stack, "POST", mark_all, token=user_token(a)) == (200, {"updated": 2})
    assert call_json(stack, "POST", mark_all, token=user_token(a)) == (200, {"updated": 0})
    assert db.execute("select read_at is null from notifications where id = %s",
                      (users["ids"][b],)).fetchone() == (True,)


def test_who_may_create_notifications(stack, users, db):
    org, a, b, c = users["org"], users["a"], users["b"], users["c"]
    direct = {"organization_id": org, "user_id": a, "type": "invoice.paid", "title": "Paid",
              "message": "Invoice 42 is paid", "data": {"invoice": 42}}

    status, created = call_json(stack, "POST", "/api/notifications", token=stack.key("service_role"),
                                body={"user_id": c, "type": "hello", "title": "Hi", "message": "m"})
    assert status == 201 and created["user_id"] == c and created["priority"] == "normal"

    status, created = call_json(stack, "POST", "/api/notifications", token=user_token(b), body=direct)
    assert status == 201 and created["user_id"] == a and created["data"] == {"invoice": 42}
    status, page = call_json(stack, "GET", "/api/notifications?type=invoice.paid", token=user_token(a))
    assert [item["id"] for item in page["items"]] == [created["id"]]

    status, created = call_json(stack, "POST", "/api/notifications", token=user_token(b), body={
        "organization_id": org, "role_target": ["admin"], "type": "server.down", "title": "Outage",
        "message": "API is down", "priority": "urgent"})
    assert status == 201 and created["role_target"] == ["admin"] and created["user_id"] is None
    copies = db.execute("select user_id::text from notifications where parent_id = %s",
                        (created["id"],)).fetchall()
    assert copies == [(b,)]

    outsider = {**direct, "user_id": c}  # an admin notifies members of their organization only
    no_org = {k: v for k, v in direct.items() if k != "organization_id"}
    # a student; an admin of another organization; an admin, for outsiders or no organization
    for caller, body in ((a, direct), (c, direct), (b, outsider), (b, no_org)):
        status, answer = call_json(stack, "POST", "/api/notifications", token=user_token(caller),
                                   body=body)
        assert status == 403 and answer["message"].startswith("Forbidden")
    status, answer = call_json(stack, "POST", "/api/notifications", token=stack.key("anon"), body=direct)
    assert status == 401 and answer["message"].startswith("Unauthorized")


@pytest.mark.parametrize("body, field", [
    ({"type": "t", "title": "t", "message": "m"}, "body"),
    ({"user_id": "u", "type": "t", "title": "t", "message": "m"}, "body.user_id"),
    ({"user_id": str(uuid.uuid4()), "role_target": ["admin"], "organization_id": str(uuid.uuid4()),
      "type": "t", "title": "t", "message": "m"}, "body"),
    ({"role_target": ["admin"], "type": "t", "title": "t", "message": "m"}, "body"),
    ({"role_target": [], "organization_id": str(uuid.uuid4()), "type": "t", "title": "t",
      "message": "m"}, "body"),
    ({"user_id": str(uuid.uuid4()), "type": "t", "title": "t", "message": "m", "priority": "asap"},
     "body.priority"),
    ({"user_id": str(uuid.uuid4()), "type": "t", "title": "t", "message": "m", "delivery_method": []},
     "body.delivery_method"),
    ({"user_id": str(uuid.uuid4()), "type": "t", "title": "t", "message": "m", "colour": "red"},
     "body.colour"),
    ({"user_id": str(uuid.uuid4()), "type": "t", "title": "t", "message": "m",
      "data": {"x": "\u0000"}}, None),
    ([1, 2], "body"),
])
def test_a_bad_notification_is_422_with_the_field_at_fault(stack, body, field):
    status, answer = call_json(stack, "POST", "/api/notifications", token=stack.key("service_role"),
                               body=body)
    assert status == 422 and answer["message"].startswith("Unprocessable")
    if field is not None:
        assert field in [e["field"] for e in answer["errors"]]


def test_malformed_requests_are_400(stack, users):
    token, own = user_token(users["a"]), users["ids"][users["a"]]
    for raw in (b"{not json", b"", b"\xff\xfe"):
        status, answer = call_json(stack, "POST", "/api/notifications",
                                   token=stack.key("service_role"), raw=raw)
        assert status == 400 and "JSON" in answer["message"]
    assert call(stack, "PATCH", f"/api/notifications/{own}", token=token, raw=b"read=true")[0] == 400
    for body in ({"read": "yes"}, {}, {"read": True, "title": "x"}):
        assert call(stack, "PATCH", f"/api/notifications/{own}", token=token, body=body)[0] == 422
    for query in ("limit=0", "limit=101", "limit=ten", "read=maybe", "cursor=garbage", "cursor=eyJ4Ijox",
                  "sort=asc", "type="):
        status, answer = call_json(stack, "GET", f"/api/notifications?{query}", token=token)
        assert status == 400 and answer["errors"][0]["field"].startswith("query."), query


def test_requests_need_a_users_valid_jwt(stack, users):
    me = users["a"]
    expired = user_token(me, expires_in=-60)
    forged = jwt.encode({"role": "authenticated", "sub": me, "exp": int(time.time()) + 60},
                        "another-secret-with-at-least-32-characters!", algorithm="HS256")
    for token in (None, expired, forged, "not.a.jwt", stack.key("anon")):
        status, answer = call_json(stack, "GET", "/api/notifications", token=token)
        assert status == 401 and answer["message"].startswith("Unauthorized"), token
    assert "expired" in call_json(stack, "GET", "/api/notifications", token=expired)[1]["message"]
    no_user = jwt.encode({"role": "authenticated", "exp": int(time.time()) + 60}, DEV_JWT_SECRET,
                         algorithm="HS256")
    mark_all = "/api/notifications/mark-all-read"
    assert call(stack, "POST", mark_all, token=no_user)[0] == 401
    # The service_role key has no inbox: acting on "every row" is not what a per-user route means.
    assert call(stack, "POST", mark_all, token=stack.key("service_role"))[0] == 403
    status, page = call_json(stack, "GET", "/api/notifications", headers={"apikey": user_token(me)})
    assert status == 200 and [i["id"] for i in page["items"]] == [users["ids"][me]]


def test_unknown_routes_are_404_and_wrong_methods_405(stack):
    status, answer = call_json(stack, "GET", "/api/nothing-here")
    assert status == 404 and "no route" in answer["message"]
    status, headers, _ = call(stack, "PUT", "/api/notifications")
    assert status == 405 and headers["allow"] == "GET, POST"
    assert call(stack, "POST", f"/api/notifications/{uuid.uuid4()}")[0] == 405


def preference(db, user, type, channel):
    row = db.execute("select enabled from notification_preferences where user_id = %s and type = %s "
                     "and channel = %s", (user, type, channel)).fetchone()
    return row[0] if row else None


def confirm(stack, page: bytes) -> tuple[int, bytes]:
    """Press the confirmation page's button, as a browser does: post its form to its action."""
    action = html.unescape(re.search(rb'<form method="post" action="([^"]+)"', page).group(1).decode())
    fields = dict(re.findall(rb'<input type="hidden" name="([^"]+)" value="([^"]+)"', page))
    status, _, answer = call(stack, "POST", "/api/unsubscribe" + action,
                             raw=urllib.parse.urlencode({k.decode(): v.decode() for k, v in fields.items()}).encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      "Accept": "text/html,application/xhtml+xml"})
    return status, answer


def test_an_unsubscribe_link_asks_then_records_the_opt_out(stack, db):
    me, kind = str(uuid.uuid4()), "<b>invoice</b>.paid"
    db.execute("insert into notification_preferences (user_id, type, channel, enabled) "
               "values (%s, %s, 'email', true)", (me, kind))
    token = make_token(me, kind, "email", DEV_JWT_SECRET, datetime.now(UTC))
    status, headers, page = call(stack, "GET", f"/api/unsubscribe?token={token}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "Unsubscribe from &lt;b&gt;invoice&lt;/b&gt;.paid email notifications?" in page.decode()
    # Following the link (as a mail scanner does) changes nothing; the button does.
    assert preference(db, me, kind, "email") is True
    status, answer = confirm(stack, page)
    assert status == 200 and ("You are unsubscribed from &lt;b&gt;invoice&lt;/b&gt;.paid email notifications"
                              in answer.decode())
    assert preference(db, me, kind, "email") is False
    assert confirm(stack, page)[0] == 200  # a second click is fine

    everything = make_token(me, "*", "sms", DEV_JWT_SECRET, datetime.now(UTC))
    page = call(stack, "GET", f"/api/unsubscribe?token={everything}")[2]
    assert b"Unsubscribe from all SMS notifications?" in page
    assert b"from all SMS notifications" in confirm(stack, page)[1]
    assert preference(db, me, "*", "sms") is False


def test_one_click_unsubscribe_as_mailbox_providers_post_it(stack, db):
    me = str(uuid.uuid4())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    token = make_token(me, "invoice.paid", "email", DEV_JWT_SECRET, datetime.now(UTC))
    status, answer = call_json(stack, "POST", f"/api/unsubscribe?token={token}",
                               raw=b"List-Unsubscribe=One-Click", headers=form)
    assert status == 200 and answer == {"type": "invoice.paid", "channel": "email"}
    assert preference(db, me, "invoice.paid", "email") is False

    multipart = (b"--b0und\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
                 b"One-Click\r\n--b0und--\r\n")
    token = make_token(me, "server.down", "email", DEV_JWT_SECRET, datetime.now(UTC))
    status, _ = call_json(stack, "POST", f"/api/unsubscribe?token={token}", raw=multipart,
                          headers={"Content-Type": "multipart/form-data; boundary=b0und"})
    assert status == 200 and preference(db, me, "server.down", "email") is False

    token = make_token(me, "other", "email", DEV_JWT_SECRET, datetime.now(UTC))
    status, answer = call_json(stack, "POST", f"/api/unsubscribe?token={token}", raw=b"x=1",
                               headers=form)
    assert status == 400 and "One-Click" in answer["message"]
    assert preference(db, me, "other", "email") is None


def test_a_bad_or_expired_unsubscribe_token_is_400(stack, db):
    me = str(uuid.uuid4())
    good = make_token(me, "invoice.paid", "email", DEV_JWT_SECRET, datetime.now(UTC))
    old = make_token(me, "invoice.paid", "email", DEV_JWT_SECRET,
                     datetime.now(UTC) - timedelta(days=400))
    forged = make_token(me, "invoice.paid", "email", "another-secret-with-at-least-32-characters!",
                        datetime.now(UTC))
    for token in (old, forged, good[:-2] + ("AA" if good[-2:] != "AA" else "BB"), "%3Cscript%3E", ""):
        status, headers, page = call(stack, "GET", f"/api/unsubscribe?token={token}")
        assert status == 400 and headers["content-type"].startswith("text/html")
        assert b"<script>" not in page
        status, answer = call_json(stack, "POST", f"/api/unsubscribe?token={token}",
                                   raw=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 400 and answer["message"].startswith("Bad Request")
        status, headers, page = call(stack, "POST", f"/api/unsubscribe?token={token}",
                                     raw=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "text/html"})
        assert status == 400 and headers["content-type"].startswith("text/html")
    assert b"expired" in call(stack, "GET", f"/api/unsubscribe?token={old}")[2]
    assert call(stack, "GET", "/api/unsubscribe")[0] == 400
    assert preference(db, me, "invoice.paid", "email") is None


def test_the_openapi_document_lists_every_route_served(stack):
    status, doc = call_json(stack, "GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {
        ("GET", "/api/notifications"), ("POST", "/api/notifications"),
        ("POST", "/api/notifications/mark-all-read"), ("POST", "/api/notifications/cancel"),
        ("POST", "/api/notifications/mark-all-seen"), ("POST", "/api/notifications/mark-all-archived"),
        ("GET", "/api/notifications/counts"), ("GET", "/api/notifications/{id}/explain"),
        ("POST", "/api/notifications/explain"),
        ("PATCH", "/api/notifications/{id}"),
        ("DELETE", "/api/notifications/{id}"), ("GET", "/api/unsubscribe"),
        ("POST", "/api/unsubscribe"), ("GET", "/api/openapi.json")}
    for method, path in documented:
        # Served: whatever the answer, it is not "no such route" or "method not allowed".
        status, _, payload = call(stack, method, path.replace("{id}", str(uuid.uuid4())))
        assert status != 405 and b"no route" not in payload, (method, path)
    for route in ("/api/notifications/{id}/read", "/api/preferences"):
        assert call(stack, "GET", route.replace("{id}", str(uuid.uuid4())))[0] == 404

    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    names = {f"#/components/schemas/{name}" for name in doc["components"]["schemas"]}
    assert set(refs(doc)) <= names
    create = doc["paths"]["/api/notifications"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"user_id", "role_target", "priority", "delivery_method"} <= set(schema["properties"])
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apikey"}
    assert doc["paths"]["/api/unsubscribe"]["get"]["security"] == []


def test_swagger_ui_serves_the_same_routes(stack):
    status, headers, page = call(stack, "GET", "/api/docs")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"SwaggerUIBundle" in page
    status, doc = call_json(stack, "GET", "/api/docs?format=json")
    assert status == 200
    assert set(doc["paths"]) == set(call_json(stack, "GET", "/api/openapi.json")[1]["paths"])


def test_who_calls_is_checked_before_what_they_send(stack, users):
    for method, path, raw in (("POST", "/api/notifications", b"{not json"),
                              ("GET", "/api/notifications?limit=0", None),
                              ("PATCH", f"/api/notifications/{users['ids'][users['a']]}", b"[]")):
        status, answer = call_json(stack, method, path, token=stack.key("anon"), raw=raw,
                                   headers={"Content-Type": "application/json"})
        assert status == 401 and answer["message"].startswith("Unauthorized"), path
        # Control: a user's (or the service_role) JWT gets the request's own 4xx.
        token = stack.key("service_role") if method == "POST" else user_token(users["a"])
        status, _ = call_json(stack, method, path, token=token, raw=raw,
                              headers={"Content-Type": "application/json"})
        assert status in (400, 422), path
