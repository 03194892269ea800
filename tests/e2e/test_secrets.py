"""Secrets that rotate: the database password is read from Secrets Manager through Powertools
Parameters, and a login that fails reads it again once before giving up."""
from __future__ import annotations

import json
import time
import uuid

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ripple.auth.jwt import _secret
from ripple.aws import clients, observe_calls
from ripple.config import settings
from ripple.db import Database
from ripple.local.stack import REGION
from ripple.observability import current_function

pytestmark = pytest.mark.e2e


@pytest.fixture
def rotating(stack, monkeypatch):
    """A login role whose password lives in a Secrets Manager secret, and the settings that name
    it; yields (secret id, set_password, reads) where reads counts GetSecretValue calls."""
    sm = boto3.client("secretsmanager", endpoint_url=stack.aws_url, region_name=REGION)
    target = conninfo_to_dict(stack.db_url)
    role = f"rotating_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute(f"create role {role} login password 'first'")

    def secret(password: str) -> str:
        return json.dumps({"host": target["host"], "port": int(target["port"]), "username": role,
                           "password": password, "dbname": target.get("dbname", "postgres")})

    arn = sm.create_secret(Name=f"ripple-db-{role}", SecretString=secret("first"))["ARN"]
    jwt_arn = sm.create_secret(Name=f"ripple-jwt-{role}", SecretString="first-jwt-secret")["ARN"]
    reads: list[str] = []

    def observe(call) -> None:
        # This test's own reads; the stack's handlers run beside it in this process.
        if call.operation == "GetSecretValue" and current_function() is None:
            reads.append(call.params["SecretId"])

    undo = observe_calls(observe)
    monkeypatch.delenv("RIPPLE_DB_URL")
    monkeypatch.delenv("RIPPLE_JWT_SECRET")
    monkeypatch.setenv("RIPPLE_DB_SECRET_ARN", arn)
    monkeypatch.setenv("RIPPLE_JWT_SECRET_ARN", jwt_arn)
    monkeypatch.setenv("RIPPLE_DB_SSLMODE", "disable")
    monkeypatch.setenv("RIPPLE_SECRET_MAX_AGE_SECONDS", "300")
    settings.cache_clear()
    clients.cache_clear()

    def rotate(database_password: str, secret_password: str) -> None:
        with psycopg.connect(stack.db_url, autocommit=True) as admin:
            admin.execute(f"alter role {role} password '{database_password}'")
        sm.put_secret_value(SecretId=arn, SecretString=secret(secret_password))

    yield {"arn": arn, "jwt_arn": jwt_arn, "rotate": rotate, "reads": reads, "sm": sm}
    undo()
    monkeypatch.undo()
    settings.cache_clear()
    clients.cache_clear()
    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute(f"drop role if exists {role}")


def _one(db: Database) -> int:
    with db.transaction() as conn:
        return db.execute(conn, "select 1 as one")[0]["one"]


def _reconnect(db: Database) -> None:
    """A warm container's connection breaks (a failover, an idle timeout): the next use reconnects."""
    db.connection().close()


def test_a_rotated_password_reaches_a_warm_container_on_its_next_connection(rotating):
    db = Database.from_settings()
    assert _one(db) == 1
    assert rotating["reads"] == [rotating["arn"]]

    rotating["rotate"]("second", "second")
    _reconnect(db)
    # The cached secret still holds "first": that login fails, the secret is read again, the
    # second login succeeds.
    assert _one(db) == 1
    assert rotating["reads"] == [rotating["arn"]] * 2


def test_a_login_still_refused_after_reading_the_secret_again_fails_after_one_read(rotating):
    db = Database.from_settings()
    assert _one(db) == 1
    rotating["rotate"]("third", "not-the-password")
    _reconnect(db)
    with pytest.raises(psycopg.OperationalError):
        _one(db)
    assert rotating["reads"] == [rotating["arn"]] * 2


def test_the_jwt_secret_is_read_again_once_it_is_older_than_its_max_age(rotating, monkeypatch):
    monkeypatch.setenv("RIPPLE_SECRET_MAX_AGE_SECONDS", "2")
    settings.cache_clear()
    assert _secret() == "first-jwt-secret"
    rotating["sm"].put_secret_value(SecretId=rotating["jwt_arn"], SecretString="second-jwt-secret")
    assert _secret() == "first-jwt-secret"  # cached within the max age
    assert rotating["reads"] == [rotating["jwt_arn"]]
    time.sleep(2.2)
    assert _secret() == "second-jwt-secret"
    assert rotating["reads"] == [rotating["jwt_arn"]] * 2
