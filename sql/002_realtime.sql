-- Change capture for postgres_changes.
--
-- `alter publication supabase_realtime add table t` attaches a row trigger to t (event trigger
-- below); every insert/update/delete then writes the row images to realtime.outbox in the same
-- transaction, so an outbox row exists iff the write committed. At commit a deferred trigger
-- wakes the fanout: pg_notify locally, aws_lambda.invoke(..., 'Event') on RDS/Aurora when that
-- extension is installed and realtime.settings names the function.

create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;

create table if not exists realtime.settings (
  key text primary key,
  value text not null
);

create table if not exists realtime.outbox (
  id bigint generated always as identity primary key,
  xid xid8 not null default pg_current_xact_id(),
  kind text not null default 'change' check (kind in ('change', 'broadcast', 'notification')),
  schema_name text,
  table_name text,
  op text check (op in ('INSERT', 'UPDATE', 'DELETE')),
  record jsonb,
  old_record jsonb,
  payload jsonb,
  captured_at timestamptz not null default clock_timestamp()
);
revoke all on realtime.outbox from public;

-- Row images exactly as changed: a trigger sees the full OLD row whatever REPLICA IDENTITY says,
-- so DELETE filters work on any column.
create or replace function realtime.capture() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into realtime.outbox (schema_name, table_name, op, record, old_record)
  values (tg_table_schema, tg_table_name, tg_op,
          case when tg_op <> 'DELETE' then to_jsonb(new) end,
          case when tg_op <> 'INSERT' then to_jsonb(old) end);
  return null;
end
$$;

-- One wake-up per transaction and consumer, fired at commit time (deferred constraint trigger):
-- realtime rows (changes, broadcasts) wake the fanout, notification rows the delivery function.
create or replace function realtime.wake() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  consumer text := case when new.kind = 'notification' then 'notify' else 'fanout' end;
  flag text := 'realtime.woken_' || consumer;
  arn text;
  region text;
begin
  if coalesce(current_setting(flag, true), '') = 'yes' then
    return null;
  end if;
  perform set_config(flag, 'yes', true);
  perform pg_notify(case consumer when 'notify' then 'realtime_notifications' else 'realtime_outbox' end,
                    pg_current_xact_id()::text);
  select value into arn from realtime.settings where key = consumer || '_function_arn';
  if arn is not null and exists (select 1 from pg_catalog.pg_proc p
                                 join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                                 where n.nspname = 'aws_lambda' and p.proname = 'invoke') then
    select value into region from realtime.settings where key = 'aws_region';
    begin
      -- Dynamic SQL so this function exists on databases without the extension.
      execute 'select aws_lambda.invoke(aws_commons.create_lambda_function_arn($1, $2), $3::json, ''Event'')'
        using arn, region, json_build_object('xid', pg_current_xact_id()::text)::text;
    exception when others then
      -- Never fail the app's commit over a wake-up: the consumer's scheduled sweep delivers it.
      raise warning 'realtime: % wake-up failed: %', consumer, sqlerrm;
    end;
  end if;
  return null;
end
$$;

do $$
begin
  if not exists (select 1 from pg_trigger where tgname = 'realtime_wake'
                 and tgrelid = 'realtime.outbox'::regclass) then
    create constraint trigger realtime_wake after insert on realtime.outbox
      deferrable initially deferred for each row execute function realtime.wake();
  end if;
end
$$;

-- Attach capture to every table in the publication and detach it from tables that left.
create or replace function realtime.sync_capture() returns void
language plpgsql set search_path = '' as $$
declare
  t record;
begin
  for t in
    select c.oid, n.nspname, c.relname
    from pg_publication_tables p
    join pg_namespace n on n.nspname = p.schemaname
    join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename
    where p.pubname = 'supabase_realtime'
      and n.nspname <> 'realtime'
      and not exists (select 1 from pg_trigger g where g.tgrelid = c.oid and g.tgname = 'realtime_capture')
  loop
    begin
      execute format('create trigger realtime_capture after insert or update or delete on %I.%I '
                     'for each row execute function realtime.capture()', t.nspname, t.relname);
    exception when insufficient_privilege then
      -- Another role's DDL ran this sync; the table's owner attaches capture on their next DDL.
      raise warning 'realtime: cannot attach change capture to %.%: not its owner', t.nspname, t.relname;
    end;
  end loop;
  for t in
    select c.oid, n.nspname, c.relname
    from pg_trigger g
    join pg_class c on c.oid = g.tgrelid
    join pg_namespace n on n.oid = c.relnamespace
    where g.tgname = 'realtime_capture'
      and not exists (select 1 from pg_publication_tables p
                      where p.pubname = 'supabase_realtime'
                        and p.schemaname = n.nspname and p.tablename = c.relname)
  loop
    begin
      execute format('drop trigger realtime_capture on %I.%I', t.nspname, t.relname);
    exception when insufficient_privilege then
      raise warning 'realtime: cannot detach change capture from %.%: not its owner', t.nspname, t.relname;
    end;
  end loop;
end
$$;

create or replace function realtime.on_ddl() returns event_trigger
language plpgsql set search_path = '' as $$
begin
  perform realtime.sync_capture();
end
$$;

drop event trigger if exists realtime_capture_sync;
create event trigger realtime_capture_sync on ddl_command_end
  when tag in ('ALTER PUBLICATION', 'CREATE PUBLICATION', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
  execute function realtime.on_ddl();

drop event trigger if exists realtime_capture_drop;
create event trigger realtime_capture_drop on sql_drop
  when tag in ('DROP PUBLICATION')
  execute function realtime.on_ddl();

-- The drain's statements (`realtime.pending`, `realtime.ack`) are defined once, with the frames
-- owed to unreachable connections, in 009_owed_frames.sql; 012_message_log.sql numbers and keeps
-- what is acked.
drop function if exists realtime.drain(integer);

-- Columns of the tables a subscription names, whether each is published, and whether the
-- subscriber's role may read it at all; one round trip per join.
create or replace function realtime.describe(tables jsonb, role_name text)
returns table (schema_name text, table_name text, published boolean, readable boolean, columns jsonb)
language sql stable set search_path = '' as $$
  select w.s, w.t,
         exists (select 1 from pg_publication_tables p
                 where p.pubname = 'supabase_realtime' and p.schemaname = w.s and p.tablename = w.t),
         coalesce((select pg_catalog.has_any_column_privilege(role_name, c.oid, 'SELECT')
                   from pg_namespace n join pg_class c on c.relnamespace = n.oid
                   where n.nspname = w.s and c.relname = w.t), false),
         (select jsonb_agg(jsonb_build_object('name', a.attname, 'type', ty.typname) order by a.attnum)
          from pg_namespace n
          join pg_class c on c.relnamespace = n.oid and c.relname = w.t
          join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
          join pg_type ty on ty.oid = a.atttypid
          -- Only the columns the role may read: a filter or `select` on any other is refused,
          -- so whether an event arrives cannot reveal a hidden column's value.
          where n.nspname = w.s
            and pg_catalog.has_column_privilege(role_name, c.oid, a.attnum, 'SELECT'))
  from jsonb_to_recordset(tables) as w(s text, t text)
$$;

select realtime.sync_capture();
