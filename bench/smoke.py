"""Smoke test of a Ripple deployment (or of `make dev`): every feature once, with its latency.

    make smoke ARGS="--local"
    make smoke ARGS="--ws-url wss://<api-id>.execute-api.<region>.amazonaws.com/websocket \\
        --rest-url https://<http-api-id>.execute-api.<region>.amazonaws.com \\
        --anon-key <anon JWT> --service-key <service_role JWT> \\
        --db-url postgresql://ripple_smoke@<host>/<db>?sslmode=require --email you@example.com"

Steps: connect; subscribe to postgres_changes on a scratch table; write a row and receive it;
broadcast over the socket and through the REST API; track presence; with --email, one
notification delivered by email to that address. Each step prints its latency; the first step
that fails prints why and the script exits 1. The scratch table (public.ripple_smoke), and the
profile and notification the email step creates, are removed at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from websockets.sync.client import ClientConnection, connect

TABLE = "public.ripple_smoke"
SETUP = f"""
create table if not exists {TABLE} (id bigint generated always as identity primary key, note text not null);
grant select on {TABLE} to anon;
do $$ begin
  if not exists (select 1 from pg_publication_tables where schemaname = 'public' and tablename = 'ripple_smoke') then
    alter publication supabase_realtime add table {TABLE}; end if;
end $$;
"""
TEARDOWN = f"""
do $$ begin
  if exists (select 1 from pg_publication_tables where schemaname = 'public' and tablename = 'ripple_smoke') then
    alter publication supabase_realtime drop table {TABLE}; end if;
end $$;
drop table if exists {TABLE};
"""
# `make dev`'s endpoints and keys (see README): the local stack's fixed dev secret signs them.
LOCAL = {"ws_url": "ws://127.0.0.1:54321/realtime/v1/websocket", "rest_url": "http://127.0.0.1:54321",
         "db_url": "postgresql://postgres:postgres@127.0.0.1:54322/postgres"}


class SmokeFailure(Exception):
    """A step that did not do what it should; str() says what was seen instead."""


class Socket:
    """One Phoenix-protocol (serializer 1.0.0) connection."""

    def __init__(self, ws_url: str, key: str, timeout: float):
        self.timeout = timeout
        self.ws: ClientConnection = connect(f"{ws_url}?apikey={key}&vsn=1.0.0", open_timeout=timeout)
        self.ref = 0
        self.seen: list[dict] = []

    def send(self, topic: str, event: str, payload: Any) -> str:
        self.ref += 1
        self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": str(self.ref),
                                 "join_ref": "1"}))
        return str(self.ref)

    def wait(self, what: str, match: Callable[[dict], bool]) -> dict:
        """The first frame `match` accepts (frames before it are kept in `seen`)."""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            if match(frame):
                return frame
            self.seen.append(frame)
        raise SmokeFailure(f"no {what} within {self.timeout:.0f} s; last frames: {self.seen[-3:]}")

    def close(self) -> None:
        self.ws.close()


class Run:
    """Prints one line per step: its name, its latency, and what it checked."""

    def __init__(self) -> None:
        self.failed = False

    @contextlib.contextmanager
    def step(self, name: str, detail: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            print(f"FAIL  {name:<22} {(time.perf_counter() - started) * 1000:8.1f} ms  {exc}", flush=True)
            raise
        print(f"ok    {name:<22} {(time.perf_counter() - started) * 1000:8.1f} ms  {detail}", flush=True)


def rest_broadcast(rest_url: str, service_key: str, topic: str, payload: dict, timeout: float) -> int:
    body = json.dumps({"messages": [{"topic": topic, "event": "smoke", "payload": payload}]}).encode()
    request = urllib.request.Request(f"{rest_url.rstrip('/')}/realtime/v1/api/broadcast", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {service_key}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status


def smoke(args: argparse.Namespace) -> None:
    run = Run()
    topic = f"realtime:smoke-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db_url, autocommit=True, connect_timeout=args.timeout) as db:
        db.execute(SETUP)
        try:
            with run.step("connect", f"{args.ws_url}"):
                sock = Socket(args.ws_url, args.anon_key, args.timeout)
            try:
                with run.step("subscribe", f"postgres_changes on {TABLE}"):
                    ref = sock.send(topic, "phx_join", {"config": {
                        "broadcast": {"self": True}, "presence": {"key": "smoke", "enabled": True},
                        "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "ripple_smoke"}]}})
                    reply = sock.wait("join reply", lambda f: f["event"] == "phx_reply" and f["ref"] == ref)
                    if reply["payload"]["status"] != "ok":
                        raise SmokeFailure(f"join refused: {reply['payload']}")
                    sock.wait("'Subscribed to PostgreSQL'", lambda f: f["event"] == "system"
                              and f["payload"].get("extension") == "postgres_changes")
                    if sock.seen and any(f["event"] == "system" and f["payload"].get("status") == "error"
                                         for f in sock.seen):
                        raise SmokeFailure(f"subscription error: {sock.seen}")
                note = uuid.uuid4().hex
                with run.step("write → change", "INSERT committed, postgres_changes received"):
                    db.execute(f"insert into {TABLE} (note) values (%s)", (note,))
                    sock.wait("the inserted row", lambda f: f["event"] == "postgres_changes"
                              and f["payload"]["data"].get("record", {}).get("note") == note)
                with run.step("broadcast (socket)", "sent and received back (self: true)"):
                    sock.send(topic, "broadcast", {"type": "broadcast", "event": "ping", "payload": {"n": note}})
                    sock.wait("own broadcast", lambda f: f["event"] == "broadcast"
                              and f["payload"].get("payload", {}).get("n") == note)
                with run.step("broadcast (REST)", "POST /realtime/v1/api/broadcast, received"):
                    status = rest_broadcast(args.rest_url, args.service_key, topic.removeprefix("realtime:"),
                                            {"n": note}, args.timeout)
                    if status != 202:
                        raise SmokeFailure(f"REST broadcast answered {status}")
                    sock.wait("REST broadcast", lambda f: f["event"] == "broadcast"
                              and f["payload"].get("event") == "smoke")
                with run.step("presence", "track, presence_diff received"):
                    sock.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"who": "smoke"}})
                    sock.wait("presence_diff", lambda f: f["event"] == "presence_diff"
                              and "smoke" in f["payload"].get("joins", {}))
            finally:
                sock.close()
            if args.email:
                notify(run, db, args)
        finally:
            db.execute(TEARDOWN)


def notify(run: Run, db: psycopg.Connection, args: argparse.Namespace) -> None:
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email) values (%s, 'member', 'Ripple smoke test', %s)",
               (user, args.email))
    try:
        with run.step("notification (email)", f"delivered to {args.email}"):
            note = db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
                              "values (%s, 'ripple.smoke', 'Ripple smoke test', 'Ripple delivered this.', "
                              "'{email}') returning id", (user,)).fetchone()[0]
            deadline = time.monotonic() + args.timeout
            status = None
            while time.monotonic() < deadline:
                row = db.execute("select status, reason from notification_deliveries where notification_id = %s "
                                 "and channel = 'email'", (note,)).fetchone()
                status = row
                if row and row[0] not in ("queued",):
                    break
                time.sleep(0.2)
            if not status or status[0] != "sent":
                raise SmokeFailure(f"email delivery is {status or 'not claimed'}")
    finally:
        db.execute("delete from notifications where user_id = %s", (user,))
        db.execute("delete from profiles where id = %s", (user,))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make smoke ARGS=...", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--local", action="store_true",
                   help="use `make dev`'s endpoints and keys (override any with the options below)")
    p.add_argument("--ws-url", help="WebSocket URL: the WebSocketUrl output, or wss://<DomainName>/realtime/v1/websocket")
    p.add_argument("--rest-url", help="the RestUrl output (serves /realtime/v1/api/broadcast)")
    p.add_argument("--anon-key", help="an anon JWT signed with the JWT secret (make keys SECRET=...)")
    p.add_argument("--service-key", help="a service_role JWT signed with the JWT secret")
    p.add_argument("--db-url", help="a PostgreSQL URL for a role that may create public.ripple_smoke and "
                                    "write profiles and notifications")
    p.add_argument("--email", help="send one notification to this address (its domain must be verified in SES "
                                   "while the account is in the SES sandbox)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds each step may take (default 15)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.local:
        from ripple.local.stack import dev_key

        for name, value in LOCAL.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        args.anon_key = args.anon_key or dev_key("anon")
        args.service_key = args.service_key or dev_key("service_role")
    missing = [f"--{n.replace('_', '-')}" for n in ("ws_url", "rest_url", "anon_key", "service_key", "db_url")
               if not getattr(args, n)]
    if missing:
        parser().error(f"missing {', '.join(missing)} (or --local for `make dev`)")
    try:
        smoke(args)
    except Exception as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
