"""Broadcast and presence through the API-Gateway-faithful gateway, with the real clients."""
from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from ripple.store import store
from tests.e2e.clients import JsRoom
from tests.e2e.wire import Wire, heartbeat


async def py_room(stack, name: str, config: dict, events: list):
    """A realtime-py client in `name`, recording broadcasts and presence callbacks in `events`."""
    from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

    client = AsyncRealtimeClient(f"{stack.api_url}/realtime/v1", token=stack.key("anon"), auto_reconnect=False)
    await client.connect()
    channel = client.channel(name, {"config": config})
    channel.on_broadcast("*", lambda m: events.append(("broadcast", m)))
    channel.on_presence_join(lambda key, current, new: events.append(("join", key, new)))
    channel.on_presence_leave(lambda key, current, left: events.append(("leave", key, left)))
    joined = asyncio.Event()
    channel.on_presence_sync(lambda: events.append(("sync", dict(channel.presence_state()))))
    await channel.subscribe(lambda state, err: joined.set() if state == RealtimeSubscribeStates.SUBSCRIBED else None)
    await asyncio.wait_for(joined.wait(), 10)
    return client, channel


async def eventually(events: list, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events if predicate(e)]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw it; events: {events}")


def test_two_python_clients_broadcast_to_each_other_but_not_to_themselves(stack):
    async def scenario():
        a_events, b_events = [], []
        a, a_ch = await py_room(stack, "py-room", {"broadcast": {"self": False}}, a_events)
        b, b_ch = await py_room(stack, "py-room", {"broadcast": {"self": True}}, b_events)
        await a_ch.send_broadcast("cursor", {"x": 1})
        await b_ch.send_broadcast("cursor", {"x": 2})
        got_b = await eventually(b_events, lambda e: e[0] == "broadcast" and e[1]["payload"] == {"x": 1})
        await eventually(b_events, lambda e: e[0] == "broadcast" and e[1]["payload"] == {"x": 2})  # self: true
        await eventually(a_events, lambda e: e[0] == "broadcast" and e[1]["payload"] == {"x": 2})
        await asyncio.sleep(0.5)
        assert [e[1]["payload"] for e in a_events if e[0] == "broadcast"] == [{"x": 2}]  # self: false
        assert got_b[0][1]["event"] == "cursor"
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_supabase_js_and_python_share_a_room(stack, supabase_js):
    js = JsRoom(stack.api_url, stack.key("anon"), "mixed", {"broadcast": {"ack": True}, "presence": {"key": "js-user"}}, client=supabase_js)
    try:
        js.wait_for("status", status="SUBSCRIBED")

        async def scenario():
            events = []
            client, channel = await py_room(stack, "mixed", {"presence": {"key": "py-user"}}, events)
            js.do(op="send", event="hello", payload={"from": "js"})
            assert js.wait_for("sent")["result"] == "ok"  # ack: true waits for the server's reply
            await eventually(events, lambda e: e[0] == "broadcast" and e[1]["payload"] == {"from": "js"})
            await channel.send_broadcast("hello", {"from": "py"})
            line = await asyncio.to_thread(js.wait_for, "broadcast")
            assert line["message"]["event"] == "hello" and line["message"]["payload"] == {"from": "py"}

            await channel.track({"status": "online"})
            join = await asyncio.to_thread(js.wait_for, "join", key="py-user")
            assert join["newPresences"][0]["status"] == "online"
            js.do(op="track", payload={"status": "typing"})
            await eventually(events, lambda e: e[0] == "join" and e[1] == "js-user")
            state = channel.presence_state()
            assert set(state) == {"py-user", "js-user"}

            await channel.untrack()
            leave = await asyncio.to_thread(js.wait_for, "leave", key="py-user")
            assert leave["leftPresences"][0]["status"] == "online"
            await channel.track({"status": "back"})
            await asyncio.to_thread(js.wait_for, "join", key="py-user")
            # The client vanishes without leaving: its presence still leaves.
            await client._ws_connection.close()
            await asyncio.to_thread(js.wait_for, "leave", key="py-user")

        asyncio.run(scenario())
    finally:
        js.close()


def test_supabase_js_default_serializer_cannot_send_broadcasts_through_api_gateway(stack, supabase_js):
    # realtime-js 2.x sends client broadcasts as binary frames under vsn 2.0.0; API Gateway
    # (and the local gateway) close the socket with 1003. Receiving still works.
    sender = JsRoom(stack.api_url, stack.key("anon"), "binary", {"broadcast": {"ack": True}}, vsn="default", client=supabase_js)
    listener = JsRoom(stack.api_url, stack.key("anon"), "binary", {}, vsn="default", client=supabase_js)
    try:
        sender.wait_for("status", status="SUBSCRIBED")
        listener.wait_for("status", status="SUBSCRIBED")
        sender.do(op="send", event="blob", payload={"n": 1})
        with pytest.raises(AssertionError) as failed:
            sender.wait_for("sent")
        assert "socket closed: 1003" in str(failed.value)
        with pytest.raises(TimeoutError):
            listener.wait_for("broadcast", timeout=2)
        wire = Wire(stack.ws_url, stack.key("anon"), "2.0.0")
        wire.join("realtime:binary", [])
        wire.ws.send(b"\x03binary broadcast")
        with pytest.raises(ConnectionClosed) as closed:
            wire.recv(timeout=5)
        assert closed.value.rcvd.code == 1003
        # A V2 *text* broadcast is fine and reaches the default-serializer listener.
        other = Wire(stack.ws_url, stack.key("anon"), "2.0.0")
        other.join("realtime:binary", [])
        other.send("realtime:binary", "broadcast", {"type": "broadcast", "event": "text", "payload": {"n": 2}},
                   join_ref="jrealtime:binary")
        assert listener.wait_for("broadcast")["message"]["payload"] == {"n": 2}
        other.close()
    finally:
        sender.close()
        listener.close()


def test_ack_oversize_and_unjoined_broadcasts(stack):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:acks", [], broadcast={"ack": True, "self": True})
        ref = wire.send("realtime:acks", "broadcast", {"type": "broadcast", "event": "e", "payload": {}})
        frames = [wire.recv(), wire.recv()]
        assert {f["event"] for f in frames} == {"broadcast", "phx_reply"}
        assert next(f for f in frames if f["event"] == "phx_reply")["payload"] == {"status": "ok", "response": {}}
        assert next(f for f in frames if f["ref"] == ref)["event"] == "phx_reply"
        exceeded = {"status": "error", "response": {"error": "payload_size_exceeded"}}
        # Over 30 KB, within API Gateway's 32 KB frame: an answer, and the socket stays open.
        ref = wire.send("realtime:acks", "broadcast",
                        {"type": "broadcast", "event": "big", "payload": {"blob": "x" * 31_000}})
        assert wire.recv() == {"topic": "realtime:acks", "event": "phx_reply", "ref": ref, "payload": exceeded}
        # A client that splits a 100 KB message into 25 KB frames gets the same answer.
        big = json.dumps({"topic": "realtime:acks", "event": "broadcast", "ref": "big", "join_ref": None,
                          "payload": {"type": "broadcast", "event": "big", "payload": {"blob": "x" * 100_000}}})
        wire.ws.send([big[i:i + 25_000] for i in range(0, len(big), 25_000)])
        assert wire.recv()["payload"] == exceeded
        ref = wire.send("realtime:never-joined", "broadcast", {"type": "broadcast", "event": "e", "payload": {}})
        assert wire.recv()["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
        # One frame over 32 KB: API Gateway (and the local gateway) close the socket first.
        wire.send("realtime:acks", "broadcast",
                  {"type": "broadcast", "event": "big", "payload": {"blob": "x" * (33 * 1024)}})
        with pytest.raises(ConnectionClosed) as closed:
            wire.recv(timeout=5)
        assert closed.value.rcvd.code == 1009
    finally:
        wire.close()


def test_rate_and_channel_limits(stack):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:limits", [])
        members = store().members("realtime:limits")  # the connection id is known server-side only
        assert len(members) == 1
        cid = members[0].connection_id
        now = 1_900_000_000.0
        assert [store().spend(cid, 3, now) for _ in range(4)] == [True, True, True, False]
        assert store().spend(cid, 3, now + 1) is True
        for n in range(2):
            store().enter_channel(cid, f"realtime:extra-{n}", limit=3)
        with pytest.raises(Exception) as too_many:
            store().enter_channel(cid, "realtime:one-too-many", limit=3)
        assert type(too_many.value).__name__ == "TooManyChannels"
    finally:
        wire.close()


def _post(stack, body, key):
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{stack.api_url}/realtime/v1/api/broadcast", method="POST",
                                     data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                                     headers={"apikey": key or "", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_rest_broadcast_reaches_members_with_the_service_role_key(stack, supabase_js):
    room = JsRoom(stack.api_url, stack.key("anon"), "rest-room", {}, client=supabase_js)
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        room.wait_for("status", status="SUBSCRIBED")
        wire.join("realtime:rest-room", [])
        message = {"messages": [{"topic": "rest-room", "event": "announcement", "payload": {"text": "hi"}}]}
        assert _post(stack, message, stack.key("anon"))[0] == 403
        assert _post(stack, message, None)[0] == 401
        assert _post(stack, b"{not json", stack.key("service_role"))[0] == 400
        assert _post(stack, {"messages": [{"event": "no topic"}]}, stack.key("service_role"))[0] == 400
        assert _post(stack, message, stack.key("service_role"))[0] == 202
        got = room.wait_for("broadcast")["message"]
        assert got["event"] == "announcement" and got["payload"] == {"text": "hi"}
        pushed = wire.recv()
        assert pushed["event"] == "broadcast" and pushed["payload"]["payload"] == {"text": "hi"}
    finally:
        room.close()
        wire.close()


def test_rest_broadcast_refuses_oversize_messages_and_sends_none_of_the_request(stack):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:big-rest", [])
        small = {"topic": "big-rest", "event": "small", "payload": {"n": 1}}
        big = {"topic": "big-rest", "event": "big", "payload": {"blob": "x" * 200_000}}
        status, body = _post(stack, {"messages": [small, big]}, stack.key("service_role"))
        assert status == 400
        answer = json.loads(body)
        assert answer["error"] == "payload_size_exceeded"
        assert [(e["index"], e["topic"], e["error"]) for e in answer["errors"]] == [
            (1, "big-rest", "payload_size_exceeded")]
        assert answer["errors"][0]["bytes"] > answer["errors"][0]["limit"] == 128 * 1024
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1)
        # Up to API Gateway's 128 KB message limit a server-side broadcast goes through.
        near = {"topic": "big-rest", "event": "near", "payload": {"blob": "x" * 120_000}}
        assert _post(stack, {"messages": [near]}, stack.key("service_role"))[0] == 202
        assert wire.recv()["payload"]["payload"] == {"blob": "x" * 120_000}
    finally:
        wire.close()


def test_an_oversize_realtime_send_fails_its_transaction_and_the_next_one_arrives(stack, db):
    from ripple.broadcast.outbound import OutboundMessage, send
    from ripple.gateway import connections_api

    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:big-sql", [])
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="payload_size_exceeded"):
            db.execute("select realtime.send(jsonb_build_object('blob', repeat('x', 200000)), 'big', 'big-sql', false)")
        db.execute("select realtime.send('{\"n\": 2}'::jsonb, 'small', 'big-sql', false)")
        assert wire.recv()["payload"] == {"type": "broadcast", "event": "small", "payload": {"n": 2}}
        sent = send(store(), connections_api(),
                    [OutboundMessage(topic="big-sql", event="big", payload={"blob": "x" * 200_000})])
        assert (sent.messages, sent.oversize, sent.deliveries) == (0, 1, 0)
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1)
    finally:
        wire.close()


def test_supabase_js_http_send_reaches_the_room_with_the_service_role_key(stack, supabase_js):
    # channel.httpSend(event, payload) posts to /realtime/v1/api/broadcast/<topic>/events/<event>.
    server = JsRoom(stack.api_url, stack.key("service_role"), "http:room", {}, client=supabase_js)
    browser = JsRoom(stack.api_url, stack.key("anon"), "http:room", {}, client=supabase_js)
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        server.wait_for("status", status="SUBSCRIBED")
        browser.wait_for("status", status="SUBSCRIBED")
        wire.join("realtime:http:room", [])
        server.do(op="httpSend", event="note", payload={"text": "over http"})
        assert server.wait_for("httpSent")["result"] == {"success": True}
        assert wire.recv()["payload"] == {"type": "broadcast", "event": "note", "payload": {"text": "over http"}}
        got = browser.wait_for("broadcast")["message"]
        assert got["event"] == "note" and got["payload"] == {"text": "over http"}

        browser.do(op="httpSend", event="note", payload={"text": "anon"})
        assert browser.wait_for("error")["error"].startswith("Forbidden")
        server.do(op="httpSend", event="big", payload={"blob": "x" * 200_000})
        assert server.wait_for("error")["error"] == "payload_size_exceeded"
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1)
    finally:
        server.close()
        browser.close()
        wire.close()


def test_http_send_path_with_private_and_bad_bodies(stack, db):
    import urllib.error
    import urllib.request

    def post(path: str, body: bytes, key: str | None, content_type: str = "application/json"):
        request = urllib.request.Request(f"{stack.api_url}/realtime/v1/api/broadcast/{path}", method="POST",
                                         data=body, headers={"apikey": key or "", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    db.execute("drop policy if exists http_private_read on realtime.messages")
    db.execute("create policy http_private_read on realtime.messages for select to anon "
               "using (realtime.topic() = 'http-private')")
    public, private = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    service = stack.key("service_role")
    try:
        public.join("realtime:http-private", [])
        private.join("realtime:http-private", [], private=True)
        assert post("http-private/events/secret?private=true", b'{"n": 1}', service)[0] == 202
        assert private.recv()["payload"] == {"type": "broadcast", "event": "secret", "payload": {"n": 1}}
        assert post("http-private/events/open", b'[1, 2]', service)[0] == 202
        assert public.recv()["payload"]["payload"] == [1, 2]
        with pytest.raises(TimeoutError):
            private.recv(timeout=0.5)
        assert post("http-private/events/open", b'{"n": 1}', None)[0] == 401
        assert post("http-private/events/open", b'{"n": 1}', stack.key("anon"))[0] == 403
        assert post("http-private/events/open", b"{not json", service)[0] == 400
        assert post("http-private/events/open", b"\x00\x01", service, "application/octet-stream")[0] == 415
        with pytest.raises(TimeoutError):
            public.recv(timeout=0.5)
    finally:
        public.close()
        private.close()


def test_sql_broadcast_is_sent_after_commit_and_never_on_rollback(stack, db):
    db.execute("drop policy if exists sql_room_read on realtime.messages")
    db.execute("create policy sql_room_read on realtime.messages for select to anon "
               "using (realtime.topic() = 'sql-room')")
    public, private = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    try:
        public.join("realtime:sql-room", [])
        private.join("realtime:sql-room", [], private=True)
        with db.transaction():
            db.execute("select realtime.send('{\"n\": 1}'::jsonb, 'tick', 'sql-room', false)")
            with pytest.raises(TimeoutError):
                public.recv(timeout=0.7)  # not before commit
        assert public.recv()["payload"] == {"type": "broadcast", "event": "tick", "payload": {"n": 1}}
        import psycopg

        with psycopg.connect(stack.db_url) as conn:
            conn.execute("select realtime.send('{\"n\": 2}'::jsonb, 'tick', 'sql-room', false)")
            conn.rollback()
        db.execute("select realtime.send('{\"n\": 3}'::jsonb, 'tick', 'sql-room')")  # private by default
        assert private.recv()["payload"]["payload"] == {"n": 3}
        with pytest.raises(TimeoutError):
            public.recv(timeout=1.5)
    finally:
        public.close()
        private.close()


def test_a_presence_holder_that_vanished_without_disconnect_is_swept(stack):
    from ripple.store import Member

    watcher = Wire(stack.ws_url, stack.key("anon"))
    try:
        watcher.join("realtime:sweep-room", [], presence={"enabled": True, "key": "watcher"})
        assert watcher.recv()["event"] == "presence_state"
        ghost = "R2hvc3RQcmVzZW5jZQ="  # API Gateway lost its $disconnect
        store().put_member(Member(connection_id=ghost, topic="realtime:sweep-room", vsn="1.0.0",
                                  presence_key="ghost"), int(time.time()) + 600)
        store().set_presence(ghost, "realtime:sweep-room", {"phx_ref": "g1", "status": "here"})
        diff = watcher.recv(timeout=10)  # the sweep runs every second in the test stack
        assert diff["event"] == "presence_diff"
        assert diff["payload"] == {"joins": {}, "leaves": {"ghost": {"metas": [{"phx_ref": "g1", "status": "here"}]}}}
        assert ghost not in store().presence_holders()
    finally:
        watcher.close()


def _track(wire: Wire, topic: str, meta: dict) -> None:
    ref = wire.send(topic, "presence", {"type": "presence", "event": "track", "payload": meta},
                    join_ref="j" + topic)
    while (frame := wire.recv())["ref"] != ref:
        pass
    assert frame["payload"]["status"] == "ok", frame


def _next(wire: Wire, event: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while (frame := wire.recv(timeout=max(0.1, deadline - time.monotonic())))["event"] != event:
        pass
    return frame


def test_a_silent_presence_holder_is_departed_and_closed_while_a_heartbeating_one_stays(stack):
    # API Gateway counts the backend's posts as activity, so a vanished client in a busy room
    # never idles out: the sweep goes by when each holder last sent a heartbeat.
    from ripple.channels.lifecycle import sweep
    from ripple.gateway import connections_api

    topic = "realtime:silence"
    watcher, silent, beating = (Wire(stack.ws_url, stack.key("anon")) for _ in range(3))
    try:
        watcher.join(topic, [], presence={"enabled": True, "key": "watcher"})
        assert watcher.recv()["event"] == "presence_state"
        for wire, key in ((silent, "silent"), (beating, "beating")):
            wire.join(topic, [], presence={"enabled": True, "key": key})
            assert wire.recv()["event"] == "presence_state"
            _track(wire, topic, {"name": key})
            assert _next(watcher, "presence_diff")["payload"]["joins"][key]["metas"][0]["name"] == key
        started = time.monotonic()
        while time.monotonic() - started < 4.5:  # `silent` says nothing; `beating` keeps its heartbeat
            heartbeat(beating)
            time.sleep(0.5)
        assert sweep(store(), connections_api(), silence_seconds=3) >= 1

        diff = _next(watcher, "presence_diff")
        assert diff["payload"]["joins"] == {}
        assert list(diff["payload"]["leaves"]) == ["silent"]
        assert diff["payload"]["leaves"]["silent"]["metas"][0]["name"] == "silent"
        with pytest.raises(ConnectionClosed) as closed:  # the sweep closed it (DeleteConnection)
            while True:
                silent.recv(timeout=5)
        assert closed.value.rcvd.code == 1000
        members = {m.presence_key: m for m in store().members(topic)}
        assert set(members) == {"watcher", "beating"} and members["beating"].presence["name"] == "beating"
        heartbeat(beating)  # still connected
        with pytest.raises(TimeoutError):  # and nothing else left
            _next(watcher, "presence_diff", timeout=1.5)
    finally:
        for wire in (watcher, silent, beating):
            wire.close()


def test_several_connections_under_one_presence_key_are_one_key_with_several_metas(stack, supabase_js):
    topic = "realtime:devices"
    first, second = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    watcher = Wire(stack.ws_url, stack.key("anon"))
    js = JsRoom(stack.api_url, stack.key("anon"), "devices", {"presence": {"key": "js-watcher"}}, client=supabase_js)
    try:
        js.wait_for("status", status="SUBSCRIBED")
        watcher.join(topic, [], presence={"enabled": True, "key": "watcher"})
        assert watcher.recv()["event"] == "presence_state"
        for wire in (first, second):
            wire.join(topic, [], presence={"enabled": True, "key": "ada"})
            assert wire.recv()["event"] == "presence_state"
        _track(first, topic, {"device": "phone"})
        phone = _next(watcher, "presence_diff")["payload"]
        assert phone["leaves"] == {} and [m["device"] for m in phone["joins"]["ada"]["metas"]] == ["phone"]
        _track(second, topic, {"device": "laptop"})
        laptop = _next(watcher, "presence_diff")["payload"]
        assert laptop["leaves"] == {} and [m["device"] for m in laptop["joins"]["ada"]["metas"]] == ["laptop"]

        late = Wire(stack.ws_url, stack.key("anon"))
        late.join(topic, [], presence={"enabled": True, "key": "late"})
        state = late.recv()
        assert state["event"] == "presence_state"
        metas = state["payload"]["ada"]["metas"]
        assert sorted(m["device"] for m in metas) == ["laptop", "phone"]
        assert len({m["phx_ref"] for m in metas}) == 2
        late.close()

        # supabase-js merges the two joins under one key.
        deadline = time.monotonic() + 10
        while True:
            sync = js.wait_for("sync", timeout=max(0.1, deadline - time.monotonic()))
            if len(sync["state"].get("ada", [])) == 2:
                break
        assert sorted(p["device"] for p in sync["state"]["ada"]) == ["laptop", "phone"]

        # One device goes: a leave of that meta alone, and the key stays with the other.
        first.close()
        left = _next(watcher, "presence_diff")["payload"]
        assert left["joins"] == {}
        assert [m["device"] for m in left["leaves"]["ada"]["metas"]] == ["phone"]
        assert left["leaves"]["ada"]["metas"][0]["phx_ref"] in {m["phx_ref"] for m in metas}
        # (realtime-js 2.109's presence adapter strips phx_ref from the metas it holds when another
        # joins under their key, so its own state keeps the departed meta; its leave event is right.)
        leave = js.wait_for("leave", key="ada")
        assert [p["device"] for p in leave["leftPresences"]] == ["phone"]
    finally:
        js.close()
        for wire in (first, second, watcher):
            wire.close()


def test_without_a_presence_key_the_server_generates_one_per_connection(stack, supabase_js):
    js = JsRoom(stack.api_url, stack.key("anon"), "keyless", {}, client=supabase_js)  # presence: {key: ''}

    async def scenario():
        events = []
        client, channel = await py_room(stack, "keyless", {}, events)
        await channel.track({"who": "py"})
        py_join = await asyncio.to_thread(js.wait_for, "join")
        py_key = py_join["key"]
        assert py_key and py_join["newPresences"][0]["who"] == "py"
        js.do(op="track", payload={"who": "js"})
        found = await eventually(events, lambda e: e[0] == "join" and e[1] != py_key)
        js_key = found[0][1]
        assert js_key and js_key != py_key
        state = channel.presence_state()
        assert set(state) == {py_key, js_key}
        # The key is the connection's for the channel's life: a re-track keeps it.
        await channel.track({"who": "py", "again": True})
        again = await asyncio.to_thread(js.wait_for, "join", key=py_key)
        assert again["newPresences"][0]["again"] is True
        await client.close()

    try:
        js.wait_for("status", status="SUBSCRIBED")
        asyncio.run(scenario())
    finally:
        js.close()


# -- limits, over the wire ---------------------------------------------------------------------------
# The session stack runs with the default settings; a Router built on the same tables and gateway
# with lower limits handles the frames, and its answers reach the client through @connections.

def _connection_id(wire: Wire) -> str:
    """The server-side id of `wire`'s connection, from the membership of a topic of its own."""
    import uuid

    topic = f"realtime:whoami-{uuid.uuid4().hex}"
    wire.join(topic, [])
    (member,) = store().members(topic)
    wire.send(topic, "phx_leave", {}, join_ref="j" + topic)
    assert wire.recv()["event"] == "phx_reply"
    return member.connection_id


def _router(**limits):
    from ripple.config import settings
    from ripple.gateway import connections_api
    from ripple.router.router import Router

    return Router(store=store(), api=connections_api(), config=settings().model_copy(update=limits))


def _frame(topic: str, event: str, payload: dict, ref: str) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": "j" + topic})


def test_message_rate_limit_answers_with_supabases_error(stack):
    topic = "realtime:rate"
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        cid = _connection_id(wire)
        wire.join(topic, [], broadcast={"ack": True})
        router = _router(max_events_per_second=3)
        time.sleep(1.02 - time.time() % 1)  # the start of a one-second window
        for n in range(5):
            router.handle(cid, _frame(topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": n}},
                                      str(100 + n)))
        replies = [wire.recv() for _ in range(5)]
        assert [r["ref"] for r in replies] == ["100", "101", "102", "103", "104"]
        assert [r["payload"]["status"] for r in replies] == ["ok", "ok", "ok", "error", "error"]
        assert replies[3]["payload"]["response"] == {
            "reason": "MessagePerSecondRateLimitReached: Too many messages per second"}
        time.sleep(1.02 - time.time() % 1)  # a new window
        router.handle(cid, _frame(topic, "presence", {"type": "presence", "event": "track", "payload": {}}, "200"))
        assert wire.recv()["payload"]["status"] == "ok"
    finally:
        wire.close()


def test_presence_keys_limit_over_the_wire(stack):
    topic = "realtime:many-keys"
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join(topic, [], presence={"enabled": True, "key": "k"})
        assert wire.recv()["event"] == "presence_state"
        ref = wire.send(topic, "presence", {"type": "presence", "event": "track",
                                            "payload": {f"k{n}": n for n in range(11)}}, join_ref="j" + topic)
        reply = wire.recv()
        assert reply["ref"] == ref and reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("PresenceKeysLimitReached: ")
        assert store().members(topic)[0].presence is None
        _track(wire, topic, {f"k{n}": n for n in range(10)})  # at the limit: accepted
        assert len(store().members(topic)[0].presence) == 10 + 1  # and its phx_ref
    finally:
        wire.close()


def test_channel_limit_over_the_wire(stack):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        cid = _connection_id(wire)
        router = _router(max_channels_per_connection=2)
        for n, topic in enumerate(("realtime:ch-1", "realtime:ch-2", "realtime:ch-3")):
            router.handle(cid, _frame(topic, "phx_join", {"config": {}}, f"j{n}"))
            reply = wire.recv()
            assert reply["ref"] == f"j{n}"
        assert reply["payload"] == {"status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}}
        assert {m.topic for m in store().members("realtime:ch-3")} == set()
        router.handle(cid, _frame("realtime:ch-1", "phx_leave", {}, "l1"))
        assert wire.recv()["payload"]["status"] == "ok"
        router.handle(cid, _frame("realtime:ch-3", "phx_join", {"config": {}}, "j3"))  # room again
        assert wire.recv()["payload"]["status"] == "ok"
    finally:
        wire.close()


class _CountingDynamoDB:
    """The store's boto3 client, counting requests by operation."""

    def __init__(self, client):
        from collections import Counter

        self._client = client
        self.requests = Counter()

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_") or name in ("exceptions", "meta"):
            return attr

        def call(*args, **kwargs):
            self.requests[name] += 1
            return attr(*args, **kwargs)

        return call


@pytest.mark.parametrize("size", [2, 8])
def test_a_broadcast_to_n_members_costs_one_query_and_n_posts(stack, size):
    from dataclasses import replace

    from ripple.gateway import ConnectionsApi, connections_api

    topic = f"realtime:cost-{size}"
    members = [Wire(stack.ws_url, stack.key("anon")) for _ in range(size)]
    sender = Wire(stack.ws_url, stack.key("anon"))
    try:
        for wire in members:
            wire.join(topic, [])
        cid = _connection_id(sender)
        sender.join(topic, [])
        dynamodb = _CountingDynamoDB(store().client)
        api = ConnectionsApi(connections_api().client)
        router = _router()
        router.store, router.api = replace(store(), client=dynamodb, calls=0), api
        router.handle(cid, _frame(topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}}, "1"))
        for wire in members:
            assert wire.recv()["payload"] == {"type": "broadcast", "event": "e", "payload": {}}
        assert dynamodb.requests["query"] == 1  # the topic's members
        assert dynamodb.requests["scan"] == 0
        assert set(dynamodb.requests) <= {"query", "update_item"}  # and the rate-limit counter
        assert api.posts == size  # one per member, none to the sender (self: false)
        with pytest.raises(TimeoutError):
            sender.recv(timeout=0.3)
    finally:
        for wire in members + [sender]:
            wire.close()
