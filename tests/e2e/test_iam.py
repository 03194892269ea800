"""IAM proven by use: every AWS operation each function makes is granted to it in template.yaml,
and every grant there is used.

The local stack runs every handler in this process, so each operation is attributed to the
function whose invocation made it (ripple.observability.current_function), recorded by the hook
every Ripple client carries (ripple.aws.observe_calls). moto enforces no IAM, which is why this
test exists: the scenario below drives each function through every path that talks to AWS —
secrets read from Secrets Manager as on AWS, expired tokens, gone connections, the presence
sweep, email and SMS — and the grants are checked against what was recorded.
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import boto3
import jwt
import pytest
from cfnlint.decode import cfn_yaml
from psycopg.conninfo import conninfo_to_dict
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ripple.aws import Call, observe_calls
from ripple.config import settings
from ripple.local.gateway import LambdaContext, new_id
from ripple.local.lambda_api import function_name
from ripple.local.stack import (
    BINDINGS_TABLE,
    CONNECTIONS_TABLE,
    DEV_JWT_SECRET,
    POSTER_FUNCTION,
    REGION,
    ROOT,
    load_handler,
)
from ripple.outbox.drain import fanout
from ripple.shards.invoke import LambdaTransport
from ripple.store import Binding, DynamoDBStore, Member, table_key
from tests.e2e.aws_calls import Recorder, worker_threads_keep_context
from tests.e2e.environment import swap
from tests.e2e.wire import Wire

pytestmark = pytest.mark.e2e

TABLES = {CONNECTIONS_TABLE: "ConnectionsTable", BINDINGS_TABLE: "BindingsTable"}
# The functions Ripple invokes itself, by their local name.
FUNCTIONS = {POSTER_FUNCTION: "PosterFunction"}
# The secrets this module's scenario stored, by ARN: which template parameter each stands for.
SECRETS: dict[str, str] = {}
SCHEMA = """
create table if not exists public.iam_notes (
  id bigint generated always as identity primary key,
  org int not null,
  body text not null
);
grant select on public.iam_notes to anon, authenticated;
drop policy if exists iam_read on realtime.messages;
drop policy if exists iam_write on realtime.messages;
create policy iam_read on realtime.messages for select to authenticated using (realtime.topic() = 'iam-private');
create policy iam_write on realtime.messages for insert to authenticated with check (realtime.topic() = 'iam-private');
do $$ begin
  if not exists (select 1 from pg_publication_tables where tablename = 'iam_notes') then
    alter publication supabase_realtime add table public.iam_notes; end if;
end $$;
"""
NOTES = {"event": "*", "schema": "public", "table": "iam_notes", "filter": "org=eq.7"}


# -- the template's grants -------------------------------------------------------------------------
def _resource(value) -> str:
    """A policy resource as a symbol: table/<Logical>[/index/<name>], function/<Logical>,
    connections/<METHOD>, secret/<Parameter>, ses/<kind>/<name>, or '*'."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"secret/{value['Ref']}"
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        logical = target[0] if isinstance(target, list) else target.split(".")[0]
        kind = template()["Resources"][logical]["Type"]
        return f"{'function' if kind == 'AWS::Serverless::Function' else 'table'}/{logical}"
    text = value["Fn::Sub"]
    if text.startswith("${") and ".Arn}" in text:
        logical, rest = text[2:].split(".Arn}", 1)
        return f"table/{logical}{rest}"
    if "/@connections/" in text:
        return "connections/" + text.split("/@connections/")[0].rsplit("/", 1)[1]
    if ":ses:" in text:
        kind, name = text.rsplit(":", 1)[1].split("/", 1)
        return f"ses/{kind}/{'ConfigurationSet' if name.startswith('${') else name}"
    raise AssertionError(f"unrecognised policy resource {value!r}")


@functools.cache
def template() -> dict:
    return cfn_yaml.loads((ROOT / "template.yaml").read_text())


def grants() -> dict[str, set[tuple[str, str]]]:
    """Per function folder (functions/<name>/), the (action, resource) pairs its Policies allow."""
    out: dict[str, set[tuple[str, str]]] = {}
    for resource in template()["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        name = Path(resource["Properties"]["CodeUri"]).name
        allowed = out.setdefault(name, set())
        for policy in resource["Properties"].get("Policies", []):
            assert set(policy) == {"Statement"}, f"{name}: only inline statements are resolved here"
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                for action in actions:
                    assert "*" not in action, f"{name}: wildcard action {action}"
                    allowed.update((action, _resource(r)) for r in resources)
    return out


# -- what a recorded operation needs ----------------------------------------------------------------
def needs(call: Call, secrets: dict[str, str]) -> set[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one operation, as symbols like the grants'."""
    params = call.params
    if call.service == "dynamodb":
        action = f"dynamodb:{call.operation}"
        if "RequestItems" in params:
            return {(action, f"table/{TABLES[t]}") for t in params["RequestItems"]}
        table = f"table/{TABLES[params['TableName']]}"
        if params.get("IndexName"):
            table += f"/index/{params['IndexName']}"
        return {(action, table)}
    if call.service == "execute-api":
        method = {"PostToConnection": "POST", "DeleteConnection": "DELETE", "GetConnection": "GET"}
        return {("execute-api:ManageConnections", f"connections/{method[call.operation]}")}
    if call.service == "secretsmanager":
        return {(f"secretsmanager:{call.operation}", f"secret/{secrets.get(params['SecretId'], params['SecretId'])}")}
    if call.service == "ses":
        out = {(f"ses:{call.operation}", "ses/identity/*")}
        if params.get("ConfigurationSetName"):
            out.add((f"ses:{call.operation}", "ses/configuration-set/ConfigurationSet"))
        return out
    if call.service == "sns":
        return {(f"sns:{call.operation}", "*")}
    if call.service == "lambda" and call.operation == "Invoke":
        return {("lambda:InvokeFunction", f"function/{FUNCTIONS[function_name(params['FunctionName'])]}")}
    raise AssertionError(f"an operation the IAM test cannot map: {call.service}:{call.operation}")


def granted(need: tuple[str, str], allowed: set[tuple[str, str]]) -> bool:
    return any(fnmatch.fnmatchcase(need[0], a) and (r == "*" or fnmatch.fnmatchcase(need[1], r))
               for a, r in allowed)


def fresh_containers() -> None:
    """Forget every container-wide client, connection and setting, as a cold start would."""
    for name, module in list(sys.modules.items()):
        if name == "ripple" or (name.startswith("ripple.") and not name.startswith("ripple.local")):
            for value in vars(module).values():
                if hasattr(value, "cache_clear") and getattr(value, "__module__", None) == name:
                    value.cache_clear()


@contextlib.contextmanager
def configured_as_on_aws(stack) -> Iterator[dict[str, str]]:
    """The functions read the DB and JWT secrets from Secrets Manager and send email with a
    configuration set, and the fanout posts wide rounds through poster function invocations, as
    they do on AWS; yields {secret ARN: template parameter}."""
    sm = boto3.client("secretsmanager", endpoint_url=stack.aws_url, region_name=REGION)
    db = conninfo_to_dict(stack.db_url)
    suffix = uuid.uuid4().hex[:8]
    db_arn = sm.create_secret(Name=f"ripple-db-{suffix}", SecretString=json.dumps({
        "host": db["host"], "port": int(db.get("port", 5432)), "username": db["user"],
        "password": db.get("password", ""), "dbname": db.get("dbname", "postgres")}))["ARN"]
    jwt_arn = sm.create_secret(Name=f"ripple-jwt-{suffix}", SecretString=stack.jwt_secret)["ARN"]
    boto3.client("sesv2", endpoint_url=stack.aws_url, region_name=REGION).create_configuration_set(
        ConfigurationSetName=f"ripple-{suffix}")
    env = {"RIPPLE_DB_SECRET_ARN": db_arn, "RIPPLE_JWT_SECRET_ARN": jwt_arn, "RIPPLE_DB_SSLMODE": "disable",
           "RIPPLE_SES_CONFIGURATION_SET": f"ripple-{suffix}", "RIPPLE_PRESENCE_TIMEOUT_SECONDS": "2",
           # Every read reaches Secrets Manager: this process stands in for every function's container.
           "RIPPLE_SECRET_MAX_AGE_SECONDS": "0",
           # Every round of two posts or more goes out in two shards, each a poster invocation.
           "RIPPLE_SHARD_TRANSPORT": "lambda", "RIPPLE_POSTER_SHARDS": "2", "RIPPLE_SHARD_THRESHOLD": "2",
           "RIPPLE_DB_URL": None, "RIPPLE_JWT_SECRET": None}
    saved = swap(env)
    fresh_containers()
    try:
        yield {db_arn: "DbSecretArn", jwt_arn: "JwtSecretArn"}
    finally:
        swap(saved)
        fresh_containers()


def fanout_shards_through_the_poster_function() -> bool:
    """One sweep by the fanout (its container's clients are built in it), and whether that
    container posts wide rounds through the poster function. A wake that was building the
    container from the previous settings may have kept it after the clear: then it is built
    again."""
    load_handler("fanout").handler({"sweep": True}, LambdaContext("fanout", new_id()))
    if isinstance(getattr(fanout().api, "transport", None), LambdaTransport):
        return True
    fresh_containers()
    return False


# -- the scenario ---------------------------------------------------------------------------------
def token(exp_in: int = 3600) -> str:
    return jwt.encode({"role": "authenticated", "sub": str(uuid.uuid4()), "exp": int(time.time()) + exp_in},
                      DEV_JWT_SECRET, algorithm="HS256")


def frames(wire: Wire, seconds: float = 1.5) -> list[dict]:
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(wire.recv(timeout=seconds))
    return got


def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def ghost(store: DynamoDBStore, topic: str, *, binding: bool) -> str:
    """Rows for a connection whose $disconnect never ran: the next post to it answers 410."""
    cid = new_id()
    expires = int(time.time()) + 600
    if binding:
        store.add_bindings([Binding(connection_id=cid, topic=topic, id=1, event="*", schema="public",
                                    table="iam_notes", bucket=table_key("public", "iam_notes"), vsn="1.0.0",
                                    filter=None, role="anon", claims="{}", exp=expires)], {}, expires)
    store.put_member(Member(connection_id=cid, topic=topic, vsn="1.0.0", join_ref="g", role="anon",
                            claims="{}", exp=expires), expires)
    return cid


def join(wire: Wire, topic: str, bindings: list[dict] | None = None, user: str | None = None,
         **config) -> dict:
    """Join `topic` (with `user` as the channel's access_token) and return the join's reply."""
    payload = {"config": {"postgres_changes": bindings or [], **config}}
    if user:
        payload["access_token"] = user
    ref = wire.send(topic, "phx_join", payload, join_ref="j" + topic)
    while True:
        frame = wire.recv()
        if frame["event"] == "phx_reply" and frame["ref"] == ref:
            return frame


def http(stack, path: str, key: str, body: object | None = None) -> int:
    request = urllib.request.Request(stack.api_url + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def exercise(stack, db) -> None:
    """Every function, through every path that calls AWS; each step checks it happened."""
    db.execute(SCHEMA)
    inspect = DynamoDBStore(boto3.client("dynamodb", endpoint_url=stack.aws_url, region_name=REGION),
                    CONNECTIONS_TABLE, BINDINGS_TABLE)
    anon = stack.key("anon")

    # connect: refused, then accepted (the JWT secret read from Secrets Manager).
    with pytest.raises(InvalidStatus):
        Wire(stack.ws_url, "not-a-jwt")
    a, b, silent = (Wire(stack.ws_url, anon) for _ in range(3))
    try:
        # router: join with an eq filter (registry), presence on, a user token; heartbeat.
        reply = join(a, "realtime:iam", [NOTES], token(), presence={"key": "a", "enabled": True})
        assert reply["payload"]["status"] == "ok", reply
        assert {f["event"] for f in frames(a, 1.0)} == {"presence_state", "system"}
        join(b, "realtime:iam", presence={"key": "b", "enabled": True})
        assert b.recv()["event"] == "presence_state"
        a.send("phoenix", "heartbeat", {})
        assert a.recv()["payload"]["status"] == "ok"
        # presence track and untrack; a broadcast that also finds a gone member (router departs it).
        gone_member = ghost(inspect, "realtime:iam", binding=False)
        a.send("realtime:iam", "presence", {"type": "presence", "event": "track", "payload": {"n": 1}}, join_ref="jrealtime:iam")
        a.send("realtime:iam", "presence", {"type": "presence", "event": "untrack"}, join_ref="jrealtime:iam")
        a.send("realtime:iam", "broadcast", {"type": "broadcast", "event": "hi", "payload": {}}, join_ref="jrealtime:iam")
        assert any(f["event"] == "broadcast" for f in frames(b))
        until(lambda: not inspect.member(gone_member, "realtime:iam"))
        # access_token: the channel takes a new user token.
        a.send("realtime:iam", "access_token", {"access_token": token()}, join_ref="jrealtime:iam")
        frames(a, 1.0)
        # a private channel: read checked at join, write on the first send.
        reply = join(a, "realtime:iam-private", None, token(), private=True)
        assert reply["payload"]["status"] == "ok", reply
        a.send("realtime:iam-private", "broadcast", {"type": "broadcast", "event": "p", "payload": {}},
               join_ref="jrealtime:iam-private")
        a.send("realtime:iam-private", "phx_leave", {}, join_ref="jrealtime:iam-private")
        frames(a, 1.0)

        # fanout: a change reaches `a`; a gone subscriber is forgotten; an expired one is closed.
        gone = ghost(inspect, "realtime:iam-ghost", binding=True)
        short = Wire(stack.ws_url, anon)
        assert join(short, "realtime:iam-short", [NOTES], token(exp_in=2))["payload"]["status"] == "ok"
        time.sleep(2.5)
        db.execute("insert into iam_notes (org, body) values (7, 'hello')")
        assert any(f["event"] == "postgres_changes" for f in frames(a, 3.0))
        closing = frames(short, 3.0)
        assert [f["event"] for f in closing][-2:] == ["system", "phx_close"], closing
        short.close()
        until(lambda: not inspect.member(gone, "realtime:iam-ghost"))
        # realtime.send: a broadcast through the outbox.
        db.execute("select realtime.send('{\"n\": 1}'::jsonb, 'notice', 'iam', false)")
        assert any(f["event"] == "broadcast" for f in frames(b, 3.0))

        # broadcast API: to a live member, a gone one and an expired one.
        late = Wire(stack.ws_url, anon)
        join(late, "realtime:iam-api", None, token(exp_in=2))
        listener = Wire(stack.ws_url, anon)
        join(listener, "realtime:iam-api")
        gone_api = ghost(inspect, "realtime:iam-api", binding=False)
        time.sleep(2.5)
        assert http(stack, "/realtime/v1/api/broadcast", stack.key("service_role"),
                    {"messages": [{"topic": "iam-api", "event": "e", "payload": {"x": 1}}]}) == 202
        assert any(f["event"] == "broadcast" for f in frames(listener))
        assert [f["event"] for f in frames(late)][-2:] == ["system", "phx_close"]
        assert inspect.member(gone_api, "realtime:iam-api") is None
        late.close()
        listener.close()

        # presence sweep: a holder silent past the timeout is departed and its socket closed.
        join(silent, "realtime:iam-quiet", presence={"key": "s", "enabled": True})
        silent.send("realtime:iam-quiet", "presence", {"type": "presence", "event": "track", "payload": {}},
                    join_ref="jrealtime:iam-quiet")
        until(lambda: _closed(silent), timeout=20)
        # From here on no one is silent long enough to be swept.
        os.environ["RIPPLE_PRESENCE_TIMEOUT_SECONDS"] = "600"
        settings.cache_clear()
    finally:
        # disconnect: `a` tracks presence on a topic `b` is in, so its leave is announced to `b`.
        a.send("realtime:iam", "presence", {"type": "presence", "event": "track", "payload": {"n": 2}},
               join_ref="jrealtime:iam")
        assert any(f["event"] == "presence_diff" for f in frames(b, 1.0))
        a.close()
        assert any(f["event"] == "presence_diff" for f in frames(b, 3.0))
        b.close()
        silent.close()

    # notify: email (with the configuration set) and SMS, the unsubscribe link signed with the JWT secret.
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email, phone) values (%s, 'member', 'I', %s, %s)",
               (user, f"{user}@iam.test", "+14155550177"))
    note = db.execute("insert into notifications (user_id, type, title, message, priority, delivery_method) "
                      "values (%s, 'news', 'IAM', 'hi', 'high', '{email,sms}') returning id", (user,)).fetchone()[0]
    until(lambda: dict(db.execute("select channel, status from notification_deliveries where notification_id = %s",
                                  (note,)).fetchall()) == {"email": "sent", "sms": "sent"})
    # feedback: an SES delivery event, through its handler.
    message_id = db.execute("select provider_message_id from notification_deliveries where notification_id = %s "
                            "and channel = 'email'", (note,)).fetchone()[0]
    event = {"Records": [{"Sns": {"Message": json.dumps({"eventType": "Delivery", "mail": {"messageId": message_id}})}}]}
    assert load_handler("feedback").handler(event, LambdaContext("feedback", new_id()))["deliveries"] == 1
    # api: the inbox with the user's token, from its own (cold) container: on AWS it shares no
    # database connection with the router.
    fresh_containers()
    assert http(stack, "/api/notifications", token()) == 200


def _closed(wire: Wire) -> bool:
    """Whether the server has closed the socket (frames still arriving are read and dropped)."""
    try:
        wire.recv(timeout=0.5)
    except TimeoutError:
        return False
    except ConnectionClosed:
        return True
    return False


def by_function(recorder: Recorder, secrets: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    """What each function needed; every recorded call must come from inside a handler."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for function, call in recorder.calls:
        assert function is not None, f"{call.service}:{call.operation} made outside any handler"
        out[function] |= needs(call, secrets)
    return out


@pytest.fixture(scope="module")
def recorded(stack, db):
    recorder = Recorder()
    undo = observe_calls(recorder)
    try:
        with worker_threads_keep_context(), configured_as_on_aws(stack) as secrets:
            until(fanout_shards_through_the_poster_function)
            exercise(stack, db)
            time.sleep(1.5)  # the bridge's next sweep, with secrets still read from Secrets Manager
    finally:
        undo()
    SECRETS.update(secrets)
    return by_function(recorder, secrets)


@pytest.fixture(scope="module")
def db(stack):
    import psycopg

    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        yield conn


def test_every_function_was_exercised(recorded):
    assert set(recorded) == set(grants()), "a function the scenario never ran, or one the template lacks"


def test_every_operation_is_granted_to_the_function_that_made_it(recorded):
    allowed = grants()
    missing = {f"{function}: {action} on {resource}" for function, used in recorded.items()
               for action, resource in used if not granted((action, resource), allowed[function])}
    assert not missing, "operations template.yaml does not grant:\n" + "\n".join(sorted(missing))


def test_every_grant_is_used(recorded):
    unused = {f"{function}: {action} on {resource}" for function, allowed in grants().items()
              for action, resource in allowed
              if not any(granted(need, {(action, resource)}) for need in recorded.get(function, ()))}
    assert not unused, "grants no operation used:\n" + "\n".join(sorted(unused))


def test_every_operation_the_whole_suite_made_is_granted(suite_calls, recorded):
    """Every handler invocation of the end-to-end suite so far (this module runs last), not only
    this module's scenario: each operation is granted to the function that made it. Calls the
    tests make through the package themselves (inspecting rows) belong to no function."""
    allowed = grants()
    missing = {f"{function}: {action} on {resource}" for function, call in suite_calls.calls if function
               for action, resource in needs(call, SECRETS) if not granted((action, resource), allowed[function])}
    assert not missing, "operations template.yaml does not grant:\n" + "\n".join(sorted(missing))
    assert {function for function, _ in suite_calls.calls if function} == set(allowed)
