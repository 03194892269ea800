"""The whole local stack on loopback: Postgres, moto, the WebSocket gateway, the wake-up bridge,
the mailbox, the Realtime Inspector, and the Lambda Invoke API for the poster function.

`Stack(...).start()` probes every port first (PortInUse names a busy one and its setting), then
brings every part up (in a background thread for the asyncio parts); if any part fails to
start, whatever was started is stopped again before the error propagates. `GET /health` on the
gateway answers 200 once all of them are ready.
"""
from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import boto3
import jwt as pyjwt

from ripple.local.aws import MotoServer
from ripple.local.bridge import Bridge
from ripple.local.gateway import Gateway, Limits, Routes
from ripple.local.gatewayd import KILL_SECONDS, GatewayFailed, GatewayProcess
from ripple.local.gatewayd import STOP_SECONDS as GATEWAY_STOP_SECONDS
from ripple.local.http import http_route
from ripple.local.inspector.activity import Activity, observed
from ripple.local.inspector.server import Inspector, Settings
from ripple.local.lambda_api import LambdaApi
from ripple.local.mailbox import Mailbox
from ripple.local.management import Tap
from ripple.local.ports import PortInUse, Ports
from ripple.local.postgres import LocalPostgres, migrate
from ripple.local.token import DEV_JWT_SECRET
from ripple.store import store

ROOT = Path(__file__).resolve().parents[4]
REGION = "us-east-1"
CONNECTIONS_TABLE = "ripple-connections"
BINDINGS_TABLE = "ripple-bindings"
MAIL_DOMAIN = "ripple.test"
# The poster function's name, as the fanout invokes it with RIPPLE_SHARD_TRANSPORT=lambda.
POSTER_FUNCTION = "ripple-poster"
# A stopping stack waits for its gateway's bounded stop (the $disconnects, then SIGTERM and
# SIGKILL for its process) and a little more, so the parts after it always get to stop too.
STOP_SECONDS = GATEWAY_STOP_SECONDS + KILL_SECONDS + 10.0
# The browser bundle the Inspector and the demo page load, installed by `make dev` (web/).
SUPABASE_JS = ROOT / "web" / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"


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
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_gateway(*, port: int, host: str = "127.0.0.1", limits: Limits | None = None,
                  ready: Callable[[], bool] = lambda: True, tap: Tap | None = None) -> Gateway:
    """The stack's gateway, not yet started: the WebSocket routes to the connect, router and
    disconnect handlers, plus the broadcast and REST routes, each handler loaded as Lambda does.
    Built the same way in the stack's process and in `ripple.local.gatewayd`'s."""
    connect, router, disconnect, broadcast, api = (
        load_handler(n) for n in ("connect", "router", "disconnect", "broadcast", "api"))
    gateway = Gateway(
        Routes(connect=connect.handler, default=router.handler, disconnect=disconnect.handler),
        host=host, port=port, limits=limits, ready=ready, tap=tap)
    for path in ("/realtime/v1/api/broadcast", "/realtime/v1/api/broadcast/{topic}/events/{event}"):
        gateway.app.router.add_post(path, http_route("broadcast", broadcast.handler))
    gateway.app.router.add_route("*", "/api/{tail:.*}", http_route("api", api.handler))
    return gateway


def local_functions() -> LambdaApi:
    """The functions Ripple invokes itself (the poster), behind the Lambda Invoke API, not yet
    started; served next to the gateway, in whichever process runs it."""
    return LambdaApi({POSTER_FUNCTION: load_handler("poster").handler})


def gateway_process_default() -> bool:
    """RIPPLE_LOCAL_GATEWAY_PROCESS=1 runs the gateway in its own process (see `Stack`)."""
    return os.environ.get("RIPPLE_LOCAL_GATEWAY_PROCESS", "").strip() == "1"


@dataclass
class Stack:
    """The local stack. With `gateway_process` the gateway (WebSocket server, `@connections`,
    the connect/router/disconnect handlers, the broadcast and REST routes) runs in a child
    process (`ripple.local.gatewayd`) and `gateway` is its `GatewayProcess` handle; the fanout
    and everything else stay here. The Inspector is not served then: its frame tap lives in the
    gateway's process."""

    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    db_url: str | None = None
    sql_dir: Path = ROOT / "sql"
    jwt_secret: str = DEV_JWT_SECRET
    limits: Limits = field(default_factory=Limits)
    sweep_seconds: float = 2.0
    gateway_process: bool = field(default_factory=gateway_process_default)

    postgres: LocalPostgres | None = None
    gateway: Gateway | GatewayProcess | None = None
    bridge: Bridge | None = None
    mailbox: Mailbox | None = None
    inspector: Inspector | None = None
    functions: LambdaApi | None = None
    activity: Activity = field(default_factory=Activity)
    aws_url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _moto: MotoServer | None = None

    def start(self) -> Stack:
        """Start every part; on any failure (or Ctrl-C) stop what was started, then re-raise."""
        embedded = self.db_url is None
        busy = self.ports.busy(skip=() if embedded else ("db",))
        for name, port in busy:
            # The stack's own Postgres, left running, is adopted; LocalPostgres decides.
            if name != "db":
                raise PortInUse(name, port)
        try:
            if embedded:
                self.postgres = LocalPostgres(self.state_dir / "postgres", self.ports.db)
                self.postgres.start()
                self.db_url = self.postgres.url
            assert self.db_url is not None
            migrate(self.db_url, self.sql_dir)
            self._start_moto()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="ripple-local",
                                            daemon=True)
            self._thread.start()
            asyncio.run_coroutine_threadsafe(self._start_async(), self._loop).result(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every part that is running; safe to call on a partly started stack. A part that
        fails to stop does not keep the others running: its error is raised after they stop."""
        try:
            if self._loop is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self._stop_async(), self._loop).result(timeout=STOP_SECONDS)
                finally:
                    self._loop.call_soon_threadsafe(self._loop.stop)
                    if self._thread is not None:
                        self._thread.join(timeout=10)
                    self._loop = None
        finally:
            try:
                if self._moto is not None:
                    self._moto.stop()
                    self._moto = None
            finally:
                if isinstance(self.gateway, GatewayProcess):
                    self.gateway.kill()  # a no-op once stopped; else the child must not outlive us
                if self.postgres is not None:
                    self.postgres.stop()

    @property
    def ws_url(self) -> str:
        assert self.gateway is not None, "start() first"
        return self.gateway.ws_url

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "start() first"
        return self.gateway.url

    @property
    def mail_url(self) -> str:
        assert self.mailbox is not None, "start() first"
        return self.mailbox.url

    @property
    def inspector_url(self) -> str | None:
        return self.inspector.url if self.inspector is not None else None

    def env(self) -> dict[str, str]:
        """What a client of this stack needs, under the names the README's code reads."""
        return {"SUPABASE_URL": self.api_url, "SUPABASE_ANON_KEY": self.key("anon"),
                "SUPABASE_SERVICE_ROLE_KEY": self.key("service_role"),
                "DATABASE_URL": self.db_url or "", "RIPPLE_JWT_SECRET": self.jwt_secret,
                "RIPPLE_INSPECTOR_URL": self.inspector_url or "", "RIPPLE_MAIL_URL": self.mail_url}

    def write_env(self, path: Path) -> Path:
        """`env()` as a shell file (`source .ripple/env`), readable only by its owner."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: whoever waits for the file never reads it half written.
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(f"export {k}='{v}'\n" for k, v in self.env().items()))
        partial.chmod(0o600)
        partial.replace(path)
        return path

    def key(self, role: str) -> str:
        return dev_key(role, self.jwt_secret)

    def _start_moto(self) -> None:
        self._moto = MotoServer(port=self.ports.aws)
        try:
            self._moto.start()
        except OSError as error:
            self._moto = None
            raise PortInUse("aws", self.ports.aws, str(error)) from error
        self.aws_url = self._moto.url
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
        assert self.db_url is not None
        fanout, notify = (load_handler(n) for n in ("fanout", "notify"))
        # The activity log is the inspector's: without one, nothing watches frames or fanout runs
        # (the tap decodes every frame, and each run would cost two more outbox reads). A gateway
        # in its own process has no tap here, so it has no inspector either.
        watched = self.ports.inspector is not None and not self.gateway_process
        if self.gateway_process:
            self.gateway = GatewayProcess(port=self.ports.api, limits=self.limits)
            await asyncio.to_thread(self._start_gateway_process, self.gateway)
            functions_url = self.gateway.functions_url
        else:
            self.gateway = local_gateway(port=self.ports.api, limits=self.limits, ready=self._ready,
                                         tap=self.activity if watched else None)
            await self.gateway.start()
            self.functions = local_functions()
            await self.functions.start()
            functions_url = self.functions.url
        os.environ.update({
            "AWS_ENDPOINT_URL_LAMBDA": functions_url,
            "RIPPLE_POSTER_FUNCTION": POSTER_FUNCTION,
            "POWERTOOLS_SERVICE_NAME": "ripple",
            "RIPPLE_DB_URL": self.db_url,
            "RIPPLE_JWT_SECRET": self.jwt_secret,
            "RIPPLE_CONNECTIONS_ENDPOINT": self.gateway.url,
            "RIPPLE_CONNECTIONS_TABLE": CONNECTIONS_TABLE,
            "RIPPLE_BINDINGS_TABLE": BINDINGS_TABLE,
            "RIPPLE_MAIL_FROM": f"Ripple <notifications@{MAIL_DOMAIN}>",
            "RIPPLE_PUBLIC_URL": self.gateway.url,
        })
        if isinstance(self.gateway, GatewayProcess):
            self.gateway.configure(dict(os.environ))
        self.mailbox = Mailbox(port=self.ports.mail, region=REGION)
        await self.mailbox.start()
        if watched and self.ports.inspector is not None:
            self.inspector = Inspector(
                Settings(api_url=self.gateway.url, anon_key=self.key("anon"), db_url=self.db_url,
                         jwt_secret=self.jwt_secret, vendor=SUPABASE_JS),
                self.activity, store, port=self.ports.inspector)
            await self.inspector.start()
        self.bridge = Bridge(self.db_url, {
            "realtime_outbox": observed(fanout.handler, self.db_url, self.activity) if watched else fanout.handler,
            "realtime_notifications": notify.handler}, self.sweep_seconds)
        await self.bridge.start()
        if isinstance(self.gateway, GatewayProcess):
            self.gateway.ready()

    def _start_gateway_process(self, gateway: GatewayProcess) -> None:
        try:
            gateway.start()
        except GatewayFailed as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse("api", self.ports.api, str(error)) from error
            raise

    async def _stop_async(self) -> None:
        failed: list[Exception] = []
        for part in (self.bridge, self.gateway, self.functions, self.mailbox, self.inspector):
            if part is None:
                continue
            try:
                await part.stop()
            except Exception as exc:  # the next parts still stop
                failed.append(exc)
        if failed:
            raise failed[0]

    def _ready(self) -> bool:
        return self.bridge is not None and self.bridge.listening.is_set()
