"""The whole local stack on loopback: Postgres, moto, the WebSocket gateway and the wake-up bridge.

`Stack(...).start()` brings every part up (in a background thread for the asyncio parts) and
`GET /health` on the gateway answers 200 once all of them are ready.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import boto3
import jwt as pyjwt

from ripple.local.bridge import Bridge
from ripple.local.gateway import Gateway, Limits, Routes
from ripple.local.http import http_route
from ripple.local.mailbox import Mailbox
from ripple.local.postgres import LocalPostgres, migrate

ROOT = Path(__file__).resolve().parents[4]
DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
REGION = "us-east-1"
CONNECTIONS_TABLE = "ripple-connections"
BINDINGS_TABLE = "ripple-bindings"
MAIL_DOMAIN = "ripple.test"


@dataclass
class Ports:
    """Supabase CLI's ports by default; 0 picks a free one (tests)."""

    api: int = 54321
    db: int = 54322
    mail: int = 54324
    aws: int = 54326


# Fixed issue and expiry times keep the dev keys the same on every start, like the Supabase CLI's.
DEV_KEY_IAT = 1735689600  # 2025-01-01
DEV_KEY_EXP = 2051222400  # 2035-01-01


def dev_key(role: str, secret: str = DEV_JWT_SECRET) -> str:
    """An HS256 key for `role`, like the Supabase CLI's anon and service_role keys."""
    return pyjwt.encode({"iss": "ripple-local", "role": role, "iat": DEV_KEY_IAT, "exp": DEV_KEY_EXP},
                        secret, algorithm="HS256")


def create_tables(endpoint: str) -> None:
    """The DynamoDB tables of template.yaml, on moto."""
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    existing = set(ddb.list_tables()["TableNames"])
    if CONNECTIONS_TABLE not in existing:
        ddb.create_table(TableName=CONNECTIONS_TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}])
    if BINDINGS_TABLE not in existing:
        ddb.create_table(
            TableName=BINDINGS_TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("pk", "sk", "connection_id")],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_connection",
                "KeySchema": [{"AttributeName": "connection_id", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}}])
    for table in (CONNECTIONS_TABLE, BINDINGS_TABLE):
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py, loaded the way Lambda loads it (its own module)."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"ripple_function_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Stack:
    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    db_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    limits: Limits = field(default_factory=Limits)
    sweep_seconds: float = 2.0

    postgres: LocalPostgres | None = None
    gateway: Gateway | None = None
    bridge: Bridge | None = None
    mailbox: Mailbox | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _moto = None

    def start(self) -> Stack:
        if self.db_url is None:
            self.postgres = LocalPostgres(self.state_dir / "postgres", self.ports.db)
            self.postgres.start()
            self.db_url = self.postgres.url
        migrate(self.db_url, ROOT / "sql")
        self._start_moto()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ripple-local", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_async(), self._loop).result(timeout=60)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._stop_async(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self.postgres is not None:
            self.postgres.stop()

    @property
    def ws_url(self) -> str:
        return self.gateway.ws_url

    @property
    def api_url(self) -> str:
        return self.gateway.url

    @property
    def mail_url(self) -> str:
        return self.mailbox.url

    def key(self, role: str) -> str:
        return dev_key(role, self.jwt_secret)

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.ports.aws, verbose=False)
        self._moto.start()
        port = self._moto._server.server_port
        self.aws_url = f"http://127.0.0.1:{port}"
        os.environ.update({
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_DYNAMODB": self.aws_url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.aws_url,
            "AWS_ENDPOINT_URL_SESV2": self.aws_url,
            "AWS_ENDPOINT_URL_SNS": self.aws_url,
        })
        create_tables(self.aws_url)
        # SES refuses unverified senders; locally the sending domain is verified up front.
        boto3.client("sesv2", endpoint_url=self.aws_url, region_name=REGION).create_email_identity(
            EmailIdentity=MAIL_DOMAIN)

    async def _start_async(self) -> None:
        connect, router, disconnect, fanout, broadcast, notify, api = (
            load_handler(n)
            for n in ("connect", "router", "disconnect", "fanout", "broadcast", "notify", "api"))
        self.gateway = Gateway(
            Routes(connect=connect.handler, default=router.handler, disconnect=disconnect.handler),
            port=self.ports.api, limits=self.limits, ready=self._ready)
        for path in ("/realtime/v1/api/broadcast", "/realtime/v1/api/broadcast/{topic}/events/{event}"):
            self.gateway.app.router.add_post(path, http_route("broadcast", broadcast.handler))
        self.gateway.app.router.add_route("*", "/api/{tail:.*}", http_route("api", api.handler))
        await self.gateway.start()
        os.environ.update({
            "POWERTOOLS_SERVICE_NAME": "ripple",
            "RIPPLE_DB_URL": self.db_url,
            "RIPPLE_JWT_SECRET": self.jwt_secret,
            "RIPPLE_CONNECTIONS_ENDPOINT": self.gateway.url,
            "RIPPLE_CONNECTIONS_TABLE": CONNECTIONS_TABLE,
            "RIPPLE_BINDINGS_TABLE": BINDINGS_TABLE,
            "RIPPLE_MAIL_FROM": f"Ripple <notifications@{MAIL_DOMAIN}>",
            "RIPPLE_PUBLIC_URL": self.gateway.url,
        })
        self.mailbox = Mailbox(port=self.ports.mail, region=REGION)
        await self.mailbox.start()
        self.bridge = Bridge(self.db_url, {"realtime_outbox": fanout.handler,
                                           "realtime_notifications": notify.handler}, self.sweep_seconds)
        await self.bridge.start()

    async def _stop_async(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.mailbox is not None:
            await self.mailbox.stop()

    def _ready(self) -> bool:
        return self.bridge is not None and self.bridge.listening.is_set()
