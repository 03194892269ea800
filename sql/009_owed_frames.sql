-- Frames the fanout could not post (API Gateway throttling, server or connection errors after
-- retries) are kept here, in order per connection, in the same transaction that acks the batch:
-- the ack means "delivered or durably owed". `pending` returns them first, as kind 'owed' with
-- negative ids, so they are retried ahead of anything newer; `ack` removes them with the batch.
create table if not exists realtime.owed (
  id bigint generated always as identity primary key,
  connection_id text not null,
  frames jsonb not null,
  owed_since timestamptz not null default clock_timestamp()
);
revoke all on realtime.owed from public;

create or replace function realtime.owe(entries jsonb)
returns void language sql set search_path = '' as $$
  insert into realtime.owed (connection_id, frames, owed_since)
  select e.connection_id, e.frames, to_timestamp(e.since)
  from jsonb_to_recordset(entries) as e(connection_id text, frames jsonb, since double precision)
$$;

-- Drain, in two steps inside one transaction that holds the drain lock: `pending` reads up to
-- max_rows rows — owed frames first, then committed outbox rows in write order, each change with
-- its table's columns as the postgres_changes payload lists them; `ack` removes the ones
-- delivered. A single drainer keeps per-row order: two writes to one row serialize on the row
-- lock, so the later one is always written, committed and drained after the earlier.
create or replace function realtime.pending(max_rows integer default 500)
returns table (id bigint, kind text, schema_name text, table_name text, op text, record jsonb,
               old_record jsonb, payload jsonb, captured_at timestamptz, columns jsonb)
language sql stable set search_path = '' as $$
  with owed as (
    select -w.id as id, 'owed'::text as kind, null::text as schema_name, null::text as table_name,
           null::text as op, null::jsonb as record, null::jsonb as old_record,
           jsonb_build_object('connection_id', w.connection_id, 'frames', w.frames,
                              'since', extract(epoch from w.owed_since)) as payload,
           w.owed_since as captured_at
    from realtime.owed w order by w.id limit max_rows
  ),
  taken as (
    -- Notification rows belong to the delivery function, which drains them itself.
    select o.id, o.kind, o.schema_name, o.table_name, o.op, o.record, o.old_record, o.payload,
           o.captured_at
    from realtime.outbox o where o.kind <> 'notification' order by o.id
    limit greatest(0, max_rows - (select count(*) from owed))
  ),
  tables as (
    select distinct t.schema_name, t.table_name from taken t where t.kind = 'change'
  ),
  cols as (
    select tb.schema_name, tb.table_name,
           jsonb_agg(jsonb_build_object('name', a.attname, 'type', ty.typname) order by a.attnum) as columns
    from tables tb
    join pg_namespace n on n.nspname = tb.schema_name
    join pg_class c on c.relnamespace = n.oid and c.relname = tb.table_name
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    join pg_type ty on ty.oid = a.atttypid
    group by tb.schema_name, tb.table_name
  )
  select * from (
    select w.*, '[]'::jsonb as columns from owed w
    union all
    select t.id, t.kind, t.schema_name, t.table_name, t.op, t.record, t.old_record, t.payload,
           t.captured_at, coalesce(c.columns, '[]'::jsonb)
    from taken t
    left join cols c on c.schema_name = t.schema_name and c.table_name = t.table_name
  ) rows
  order by rows.kind <> 'owed', abs(rows.id)
$$;

create or replace function realtime.ack(ids bigint[])
returns void language sql set search_path = '' as $$
  delete from realtime.outbox where id = any (ids);
  delete from realtime.owed where -id = any (ids);
$$;
