"""Broadcast from Database: Supabase's documented realtime.broadcast_changes example, unchanged."""
from __future__ import annotations

import random
import uuid

import psycopg
import pytest

from tests.e2e.clients import JsTopic
from tests.e2e.test_authorization import drain, user_token
from tests.e2e.wire import Wire

# Supabase's guide ("Subscribing to Database Changes", Using Broadcast), word for word.
DOCUMENTED = """
create policy "Authenticated users can receive broadcasts"
on "realtime"."messages"
for select
to authenticated
using ( true );

create or replace function public.your_table_changes()
returns trigger
security definer
language plpgsql
as $$
begin
  perform realtime.broadcast_changes(
    'topic:' || coalesce(NEW.id, OLD.id) ::text,       -- topic - the topic to which you're broadcasting where you can use the topic id to build the topic name
    TG_OP,                                             -- event - the event that triggered the function
    TG_OP,                                             -- operation - the operation that triggered the function
    TG_TABLE_NAME,                                     -- table - the table that caused the trigger
    TG_TABLE_SCHEMA,                                   -- schema - the schema of the table that caused the trigger
    NEW,                                               -- new record - the record after the change
    OLD                                                -- old record - the record before the change
  );
  return null;
end;
$$;

create trigger handle_your_table_changes
after insert or update or delete
on public.your_table
for each row
execute function your_table_changes ();
"""
class RolledBack(Exception):
    """Leaves a transaction by rolling it back."""


POLICY = '"Authenticated users can receive broadcasts" on "realtime"."messages"'


@pytest.fixture
def your_table(db):
    db.execute("create table if not exists public.your_table (id bigint primary key, title text not null)")
    db.execute(f"drop policy if exists {POLICY}")
    db.execute("drop trigger if exists handle_your_table_changes on public.your_table")
    db.execute(DOCUMENTED)
    yield db
    # Its policy lets every signed-in user read every private topic: not for the other tests.
    db.execute(f"drop policy if exists {POLICY}")


def test_the_documented_trigger_reaches_supabase_js_on_a_private_channel(stack, your_table, supabase_js):
    row = random.randrange(1, 2**40)
    topic = f"topic:{row}"
    js = JsTopic(stack.api_url, stack.key("anon"), topic, user_token(81), client=supabase_js)
    public = Wire(stack.ws_url, user_token(81))
    anon = Wire(stack.ws_url, stack.key("anon"))
    try:
        js.wait_for("status", status="SUBSCRIBED")
        public.join(f"realtime:{topic}", [])  # the public channel of that name is another room
        reply, _ = anon.join(f"realtime:{topic}", [], private=True)
        assert reply["payload"] == {"status": "error", "response": {
            "reason": f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"}}

        your_table.execute("insert into public.your_table (id, title) values (%s, 'first')", (row,))
        with pytest.raises(RolledBack):
            with your_table.transaction():
                your_table.execute("update public.your_table set title = 'never' where id = %s", (row,))
                raise RolledBack
        your_table.execute("update public.your_table set title = 'second' where id = %s", (row,))
        your_table.execute("delete from public.your_table where id = %s", (row,))

        got = [js.wait_for("broadcast")["payload"] for _ in range(3)]
        assert [(m["type"], m["event"]) for m in got] == [("broadcast", "INSERT"), ("broadcast", "UPDATE"),
                                                          ("broadcast", "DELETE")]
        ids = [m["payload"].pop("id") for m in got]
        assert len({str(uuid.UUID(i)) for i in ids}) == 3  # a fresh uuid each
        first, second = {"id": row, "title": "first"}, {"id": row, "title": "second"}
        base = {"schema": "public", "table": "your_table"}
        assert [m["payload"] for m in got] == [
            {**base, "operation": "INSERT", "record": first, "old_record": None},
            {**base, "operation": "UPDATE", "record": second, "old_record": first},  # not 'never'
            {**base, "operation": "DELETE", "record": None, "old_record": second},
        ]
        assert [line for line in js.quiet(1.0) if line["kind"] == "broadcast"] == []
        assert drain(public, 0.3) == []
    finally:
        js.close()
        public.close()
        anon.close()


def test_broadcast_changes_refuses_what_supabase_refuses(your_table):
    call = ("select realtime.broadcast_changes('t', 'e', %s, 'your_table', 'public', "
            "null::public.your_table, null::public.your_table, %s)")
    with pytest.raises(psycopg.errors.RaiseException, match="only be triggered for each row"):
        your_table.execute(call, ("INSERT", "STATEMENT"))
    with pytest.raises(psycopg.errors.RaiseException, match="Unexpected operation type: TRUNCATE"):
        your_table.execute(call, ("TRUNCATE", "ROW"))
    # Too large for one message: the writing statement fails rather than a message going missing.
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="Failed to process the row: payload_size_exceeded"):
        your_table.execute("insert into public.your_table (id, title) values (%s, repeat('x', 200000))",
                           (random.randrange(1, 2**40),))


def test_only_trusted_code_may_call_it(your_table):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with your_table.transaction():
            your_table.execute("set local role authenticated")
            your_table.execute("select realtime.broadcast_changes('t', 'INSERT', 'INSERT', 'your_table', "
                               "'public', null::record, null::record)")
    with your_table.transaction():
        your_table.execute("set local role service_role")
        your_table.execute("select realtime.broadcast_changes('t', 'INSERT', 'INSERT', 'your_table', "
                           "'public', null::record, null::record)")
