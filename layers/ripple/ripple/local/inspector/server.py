"""The Realtime Inspector: a page on 127.0.0.1:54323 (Supabase Studio's port) and its JSON API.

    GET  /                      the Inspector page         GET /demo/   the school-CRM demo page
    GET  /api/state             connections, channels, bindings, presence, refused joins,
                                recent outbox entries with their deliveries and stage times
    GET  /api/frames/{id}       the last frames one connection sent and received
    POST /api/token             {"role", "claims"} → {"token"}: a dev JWT to join as anyone
    POST /api/explain           {"schema", "table", "type", "record", "old_record"}
                                | {"outbox_id"} | {"schema", "table", "where": {col: value}}
    GET  /api/rows?table=s.t    rows of a table read as the bearer token's user (RLS applies):
                                the demo page's first load, as PostgREST would serve it
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import psycopg
from aiohttp import web
from psycopg import sql
from psycopg.rows import dict_row

from ripple import codec
from ripple.auth.jwt import KNOWN_ROLES
from ripple.changes.change import Change, commit_timestamp
from ripple.local.http import serve
from ripple.local.inspector.activity import Activity
from ripple.local.inspector.explain import ExplainError, explain, hypothetical
from ripple.local.inspector.store_view import connections
from ripple.local.token import user_token
from ripple.outbox.drain import AUTHORIZE
from ripple.store import DynamoDBStore

logger = logging.getLogger("ripple.local.inspector")
STATIC = Path(__file__).parent / "static"
COLUMNS = """
select a.attname as name, t.typname as type from pg_attribute a
join pg_type t on t.oid = a.atttypid
where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum"""
READABLE = """
select a.attname as name from pg_attribute a
where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
  and has_column_privilege(%s, a.attrelid, a.attnum, 'SELECT') order by a.attnum"""
PENDING = """
select id, kind, schema_name, table_name, op, record, old_record, captured_at
from realtime.outbox where id = %s"""


@dataclass
class Settings:
    """What the pages need to reach the stack."""

    api_url: str
    anon_key: str
    db_url: str
    jwt_secret: str
    vendor: Path


class Inspector:
    """The aiohttp server behind the Inspector and the demo page."""

    def __init__(self, settings: Settings, activity: Activity, store: Callable[[], DynamoDBStore], *,
                 host: str = "127.0.0.1", port: int = 54323):
        self.settings, self.activity, self._store = settings, activity, store
        self.host, self.port = host, port
        self.app = web.Application(client_max_size=1024**2)
        self.app.router.add_get("/", self._file("index.html"))
        self.app.router.add_get("/demo/", self._file("demo.html"))
        self.app.router.add_get("/demo", self._to_demo)
        self.app.router.add_get("/vendor/supabase.js", self._vendor)
        self.app.router.add_static("/static/", STATIC)
        self.app.router.add_get("/api/config", self._config)
        self.app.router.add_get("/api/state", self._state)
        self.app.router.add_get("/api/frames/{connection_id}", self._frames)
        self.app.router.add_post("/api/token", self._token)
        self.app.router.add_post("/api/explain", self._explain)
        self.app.router.add_get("/api/rows", self._rows)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner, self.port = await serve(self.app, self.host, self.port)
        logger.info("inspector listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- pages ----------------------------------------------------------------------------------
    @staticmethod
    def _file(name: str) -> Callable[[web.Request], Any]:
        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})
        return page

    async def _to_demo(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/demo/")

    async def _vendor(self, request: web.Request) -> web.StreamResponse:
        if not self.settings.vendor.is_file():
            return web.Response(status=503, text="supabase-js is not installed: run `make dev`, "
                                "which installs web/node_modules")
        return web.FileResponse(self.settings.vendor, headers={"Content-Type": "text/javascript"})

    async def _config(self, request: web.Request) -> web.Response:
        api = self.settings.api_url
        return web.json_response({"api_url": api, "anon_key": self.settings.anon_key,
                                  "ws_url": "ws" + api.removeprefix("http") + "/realtime/v1/websocket"})

    # -- state ----------------------------------------------------------------------------------
    async def _state(self, request: web.Request) -> web.Response:
        live = await asyncio.to_thread(connections, self._store())
        return web.json_response({"now": time.time() * 1000, "connections": live,
                                  **self.activity.snapshot()}, dumps=codec.dumps)

    async def _frames(self, request: web.Request) -> web.Response:
        return web.json_response(self.activity.frames_of(request.match_info["connection_id"]),
                                 dumps=codec.dumps)

    async def _token(self, request: web.Request) -> web.Response:
        body = await _json(request)
        claims = body.get("claims") or {}
        role = body.get("role", "authenticated")
        if not isinstance(claims, dict) or role not in KNOWN_ROLES:
            return _bad(f"role must be one of {sorted(KNOWN_ROLES)} and claims a JSON object")
        extra = {k: v for k, v in claims.items() if k not in ("sub", "role")}
        try:
            token = user_token(claims.get("sub"), role, extra=extra,
                               ttl_seconds=int(body.get("ttl_seconds", 3600)),
                               secret=self.settings.jwt_secret)
        except (ValueError, TypeError) as error:
            return _bad(str(error))
        return web.json_response({"token": token})

    # -- explain --------------------------------------------------------------------------------
    async def _explain(self, request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            answer = await asyncio.to_thread(self.explain, body)
        except ExplainError as error:
            return _bad(str(error))
        except psycopg.Error as error:
            return _bad(f"database: {error.diag.message_primary or error}")
        return web.json_response(answer, dumps=codec.dumps)

    def explain(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON endpoint's answer; raises ExplainError for a request it cannot explain."""
        with psycopg.connect(self.settings.db_url, autocommit=True, row_factory=dict_row) as conn:
            change = self._change(conn, body)

            def authorize(request: dict[str, Any]) -> list[dict[str, Any]]:
                return conn.execute(AUTHORIZE, (codec.dumps(request),)).fetchall()

            return explain(change, self._store(), authorize)

    def _change(self, conn: psycopg.Connection[Any], body: dict[str, Any]) -> Change:
        if body.get("outbox_id") is not None:
            return self._outbox_change(conn, body["outbox_id"])
        schema, table = body.get("schema") or "public", body.get("table")
        if not isinstance(table, str) or not table or not isinstance(schema, str):
            raise ExplainError("give a table (and schema), or an outbox_id")
        relation = sql.Identifier(schema, table)
        try:
            columns = conn.execute(COLUMNS, (relation.as_string(conn),)).fetchall()
        except psycopg.errors.UndefinedTable:
            raise ExplainError(f"no table {schema}.{table}") from None
        op = str(body.get("type") or "INSERT").upper()
        record, old_record = body.get("record"), body.get("old_record")
        where = body.get("where")
        if where is not None:
            if not isinstance(where, dict) or not where:
                raise ExplainError("where must be an object of column: value")
            condition = sql.SQL(" and ").join(
                sql.SQL("{}::text = %s").format(sql.Identifier(k)) for k in where)
            found = conn.execute(sql.SQL("select to_jsonb(t) as row from {} t where {} limit 2")
                                 .format(relation, condition), [str(v) for v in where.values()]).fetchall()
            if len(found) != 1:
                raise ExplainError(f"where matches {len(found)} rows of {schema}.{table}, not one")
            record = found[0]["row"]
            old_record = record if op != "INSERT" else None
        return hypothetical(schema, table, op, record, old_record,
                            [{"name": c["name"], "type": c["type"]} for c in columns])

    def _outbox_change(self, conn: psycopg.Connection[Any], outbox_id: Any) -> Change:
        entry = self.activity.entry_by_id(int(outbox_id))
        row: dict[str, Any] | None
        if entry is not None and entry.kind == "change":
            row = {"id": entry.id, "schema_name": entry.schema, "table_name": entry.table,
                   "op": entry.op, "record": entry.record, "old_record": entry.old_record}
        else:
            row = conn.execute(PENDING, (int(outbox_id),)).fetchone()
            if row is None or row["kind"] != "change":
                raise ExplainError(f"no change with outbox id {outbox_id} is pending or recent")
        relation = sql.Identifier(row["schema_name"], row["table_name"]).as_string(conn)
        columns = conn.execute(COLUMNS, (relation,)).fetchall()
        return Change(id=int(row["id"]), schema=row["schema_name"], table=row["table_name"],
                      type=row["op"], record=row["record"], old_record=row["old_record"],
                      columns=[{"name": c["name"], "type": c["type"]} for c in columns],
                      commit_timestamp=commit_timestamp(row.get("captured_at")
                                                       or dt.datetime.now(dt.UTC)))

    # -- the demo's reads -----------------------------------------------------------------------
    async def _rows(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            claims = pyjwt.decode(token, self.settings.jwt_secret, algorithms=["HS256"],
                                  options={"verify_aud": False})
        except pyjwt.PyJWTError as error:
            return web.json_response({"message": f"invalid token: {error}"}, status=401)
        if claims.get("role") not in KNOWN_ROLES:
            return web.json_response({"message": "unknown role"}, status=401)
        schema, _, table = request.query.get("table", "").rpartition(".")
        if not table:
            return _bad("table=schema.name is required")
        try:
            rows = await asyncio.to_thread(self._read_as, claims, schema or "public", table)
        except psycopg.Error as error:
            return _bad(error.diag.message_primary or str(error))
        return web.json_response(rows, dumps=codec.dumps)

    def _read_as(self, claims: dict[str, Any], schema: str, table: str) -> list[dict[str, Any]]:
        relation = sql.Identifier(schema, table)
        with psycopg.connect(self.settings.db_url, row_factory=dict_row) as conn:
            # Only the columns the role may read, as PostgREST's `select=*` would return.
            readable = [c["name"] for c in conn.execute(
                READABLE, (relation.as_string(conn), claims["role"])).fetchall()]
            if not readable:
                return []
            conn.execute("select set_config('request.jwt.claims', %s, true)", (codec.dumps(claims),))
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(claims["role"])))
            found = conn.execute(sql.SQL("select {} from {} limit 500").format(
                sql.SQL(", ").join(map(sql.Identifier, readable)), relation)).fetchall()
            return [dict(r) for r in found]


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = codec.loads(await request.text() or "{}")
    except ValueError:
        raise web.HTTPBadRequest(text='{"message": "malformed JSON"}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"message": "expected a JSON object"}',
                                 content_type="application/json")
    return body


def _bad(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400)
