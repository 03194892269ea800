"""realtime.authorize (sql/003_authorization.sql): a policy that raises fails its principal only."""
from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.rows import dict_row

from ripple.local.postgres import migrate
from ripple.local.stack import ROOT

SCHEMA = """
create table if not exists public.ledger (
  id bigint primary key,
  organization_id int not null,
  divisor int not null default 1,
  note text
);
-- Late-bound: calls a function that only exists if someone created it.
create or replace function public.ledger_gate(gate text) returns boolean language plpgsql as $$
begin
  if gate = 'missing' then
    return public.ledger_gate_that_was_never_created();
  end if;
  return true;
end
$$;
alter table public.ledger enable row level security;
grant select on public.ledger to authenticated;
drop policy if exists ledger_by_org on public.ledger;
-- The claim is cast: a token whose organization_id is not an integer makes the policy raise.
create policy ledger_by_org on public.ledger for select to authenticated
  using (organization_id = (auth.jwt() ->> 'organization_id')::int and 100 / divisor > 0
         and public.ledger_gate((auth.jwt() ->> 'gate')));

"""


@pytest.fixture(scope="module")
def conn(stack):
    with psycopg.connect(stack.db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(SCHEMA)
        yield conn


def authorize(conn, principals: list[dict], rows: list[dict], checks: list[list[int]] | None = None) -> dict:
    images = [{"schema": "public", "table": "ledger", "row": r} for r in rows]
    if checks is None:
        checks = [[p, i] for p in range(len(principals)) for i in range(len(images))]
    request = {"principals": [{"role": "authenticated", "claims": {"role": "authenticated", **c}}
                              for c in principals],
               "images": images, "checks": checks}
    with conn.transaction():
        got = conn.execute("select * from realtime.authorize(%s::jsonb)", (json.dumps(request),)).fetchall()
    assert len(got) == len(checks)
    return {(r["principal"], r["image"]): r for r in got}


ROWS = [{"id": 1, "organization_id": 1, "divisor": 1, "note": "a"},
        {"id": 2, "organization_id": 2, "divisor": 1, "note": "b"}]


def test_every_principal_answers_normally(conn):
    got = authorize(conn, [{"organization_id": 1}, {"organization_id": 2}], ROWS)
    assert {k: v["allowed"] for k, v in got.items()} == {(0, 0): True, (0, 1): False, (1, 0): False, (1, 1): True}
    assert all(v["error"] is None and v["reason"] is None for v in got.values())


@pytest.mark.parametrize("bad,code,says,raising", [
    ({"organization_id": "not-a-number"}, "22P02", "invalid input syntax for type integer", (0, 1)),
    # The gate is only reached for rows of the principal's own organization.
    ({"organization_id": 1, "gate": "missing"}, "42883", "ledger_gate_that_was_never_created", (0,)),
], ids=["bad-cast-of-a-claim", "missing-function"])
def test_a_raising_policy_fails_its_principal_only(conn, bad, code, says, raising):
    principals = [{"organization_id": 1}, bad, {"organization_id": 2}]
    got = authorize(conn, principals, ROWS)
    for image in (0, 1):
        failed = got[(1, image)]
        assert failed["allowed"] is False and failed["hidden"] is None
        if image in raising:
            assert failed["error"] == code and says in failed["reason"]
        else:
            assert failed["error"] is None
    assert [got[(0, i)]["allowed"] for i in (0, 1)] == [True, False]
    assert [got[(2, i)]["allowed"] for i in (0, 1)] == [False, True]
    assert all(got[(p, i)]["error"] is None for p in (0, 2) for i in (0, 1))


def test_a_row_that_makes_the_policy_raise_fails_that_check_only(conn):
    # Division by zero for one row image: that principal's other rows still get their answer.
    rows = [*ROWS, {"id": 3, "organization_id": 1, "divisor": 0, "note": "zero"},
            {"id": 4, "organization_id": 1, "divisor": 5, "note": "fine"}]
    got = authorize(conn, [{"organization_id": 1}, {"organization_id": 2}], rows)
    assert got[(0, 2)]["allowed"] is False and got[(0, 2)]["error"] == "22012"
    assert "division by zero" in got[(0, 2)]["reason"]
    assert [got[(0, i)]["allowed"] for i in (0, 1, 3)] == [True, False, True]
    assert [got[(0, i)]["error"] for i in (0, 1, 3)] == [None, None, None]
    # SQL does not promise the order of AND: the other principal may raise on the same row, and
    # on that row only.
    assert [got[(1, i)]["allowed"] for i in range(4)] == [False, True, False, False]
    assert {i for i in range(4) if got[(1, i)]["error"]} <= {2}


def test_the_failure_leaves_the_session_as_it_was(conn):
    authorize(conn, [{"organization_id": "x"}, {"organization_id": 1}], ROWS)
    with conn.transaction():
        assert conn.execute("select current_user as u").fetchone()["u"] == "postgres"
        assert conn.execute("select coalesce(current_setting('request.jwt.claims', true), '') as c"
                            ).fetchone()["c"] == ""


def test_one_bad_principal_among_a_hundred(conn):
    principals = [{"organization_id": 1, "sub": f"user-{n}"} for n in range(100)]
    principals[37] = {"organization_id": "1.5", "sub": "user-37"}
    got = authorize(conn, principals, ROWS)
    assert [p for p in range(100) if got[(p, 0)]["allowed"]] == [p for p in range(100) if p != 37]
    assert {(p, i) for (p, i), v in got.items() if v["error"]} == {(37, 0), (37, 1)}


def test_migrating_again_keeps_the_new_result_shape(stack, conn):
    migrate(stack.db_url, ROOT / "sql")
    got = authorize(conn, [{"organization_id": "x"}], ROWS[:1])
    assert got[(0, 0)]["error"] == "22P02"


def test_a_principal_without_a_role_is_denied_even_where_rls_does_not_apply(conn):
    conn.execute("create table if not exists public.ledger_open (id bigint primary key)")
    conn.execute("grant select on public.ledger_open to authenticated")
    request = {"principals": [{"claims": {}}, {"role": "authenticated", "claims": {}}],
               "images": [{"schema": "public", "table": "ledger_open", "row": {"id": 1}}],
               "checks": [[0, 0], [1, 0]]}
    with conn.transaction():
        got = conn.execute("select principal, allowed, error from realtime.authorize(%s::jsonb) order by 1",
                           (json.dumps(request),)).fetchall()
    assert got == [{"principal": 0, "allowed": False, "error": None},
                   {"principal": 1, "allowed": True, "error": None}]
