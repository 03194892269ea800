"""One subscriber whose RLS policy raises fails alone: everyone else receives the whole batch."""
from __future__ import annotations

import time
import uuid

from tests.e2e.clients import JsListener
from tests.e2e.test_authorization import DOCS, drain, tenants, user_token  # noqa: F401
from tests.e2e.wire import Wire


def test_one_raising_policy_among_a_hundred_subscribers(stack, tenants):
    # docs_by_org casts the organization_id claim to int: "seventy-one" makes it raise 22P02.
    bad = JsListener(stack.api_url, stack.key("anon"), [DOCS], vsn="1.0.0", channel="docs-bad",
                     user_jwt=user_token("seventy-one"))
    good = [Wire(stack.ws_url, user_token(71, sub=str(uuid.uuid4()))) for _ in range(99)]
    try:
        bad.wait_for("status", status="SUBSCRIBED")
        assert bad.wait_for("system")["payload"]["status"] == "ok"
        for wire in good:
            reply, system = wire.join("realtime:docs-71", [DOCS])
            assert reply["payload"]["status"] == "ok" and system["payload"]["status"] == "ok"
        stack.bridge.results.clear()
        with tenants.transaction():
            ids = [tenants.execute("insert into docs (organization_id, owner, title) "
                                   "values (71, gen_random_uuid(), %s) returning id", (f"row {n}",)).fetchone()[0]
                   for n in range(3)]
            tenants.execute("update docs set title = 'row 0 renamed' where id = %s", (ids[0],))
            tenants.execute("delete from docs where id = %s", (ids[1],))
        expected = [("INSERT", "row 0"), ("INSERT", "row 1"), ("INSERT", "row 2"),
                    ("UPDATE", "row 0 renamed"), ("DELETE", "row 1")]
        for wire in good:
            got = [wire.recv(timeout=20)["payload"]["data"] for _ in expected]
            assert [(d["type"], (d.get("record") or d["old_record"])["title"]) for d in got] == expected
            assert got[3]["old_record"]["title"] == "row 0"  # the update's old image passed too
            assert drain(wire, 0.2) == []

        # The subscriber whose policy raised is told, with the SQLSTATE and not the row's values.
        told = bad.wait_for("system")["payload"]
        assert told["status"] == "error" and told["extension"] == "postgres_changes"
        assert told["message"].startswith("PolicyError: a row-level security policy of public.docs raised")
        assert "22P02" in told["message"] and "seventy-one" not in told["message"]
        assert [line for line in bad.quiet(1.0) if line["kind"] == "change"] == []

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(r["changes"] for r in stack.bridge.results):
            time.sleep(0.1)
        batches = [r for r in stack.bridge.results if r["changes"]]
        assert sum(r["changes"] for r in batches) == 5
        assert sum(r["deliveries"] for r in batches) == 99 * 5
        # Every check of the bad principal raised (one per INSERT and DELETE image, two per UPDATE);
        # the batch stayed one authorization round trip.
        assert sum(r["policy_errors"] for r in batches) == 6
        assert all(r["pg_round_trips"] == 3 * r["batches"] for r in batches)

        # Fixing the claim (a new token) heals the channel: the next change arrives.
        bad.set_auth(user_token(71))
        time.sleep(0.3)
        tenants.execute("insert into docs (organization_id, owner, title) values (71, gen_random_uuid(), 'after')")
        change, = bad.changes(1)
        assert change["payload"]["new"]["title"] == "after"
    finally:
        bad.close()
        for wire in good:
            wire.close()
