-- The message log: every change and `realtime.send` message the fanout delivered stays in
-- realtime.log for the retention window, with its position, so a (re)joining client can replay
-- what it missed. Positions are the drain order (a total order: one drainer holds the drain
-- lock), assigned in the drain's own statements: `pending_positioned` numbers the batch after
-- the last position handed out, `ack` moves the delivered rows into the log with the same numbers
-- and advances the counter. A rolled-back batch hands the same numbers out again.
--
-- The log is partitioned by day on logged_at: expiry drops whole partitions
-- (`realtime.log_maintain`, run by the fanout's scheduled sweep), never a DELETE. Notification
-- rows are not logged (they keep their own tables).
--
-- Retention: realtime.settings key 'log_retention_hours' (default 72, like Supabase's replay);
-- '0' turns the log off (ack deletes, as before).

insert into realtime.settings (key, value) values ('log_retention_hours', '72')
on conflict (key) do nothing;

create table if not exists realtime.log (
  position bigint not null,
  kind text not null check (kind in ('change', 'broadcast')),
  topic text,
  private boolean,
  schema_name text,
  table_name text,
  op text,
  record jsonb,
  old_record jsonb,
  payload jsonb,
  captured_at timestamptz not null,
  logged_at timestamptz not null default now()
) partition by range (logged_at);
revoke all on realtime.log from public;

-- Rows logged at a time no day partition covers yet (a sweep missed for days) land here, so an
-- ack never fails; log_maintain expires them with a DELETE.
create table if not exists realtime.log_default partition of realtime.log default;

-- Every index is paid for on each ack, so there are only what the replays use: a b-tree for a
-- topic's broadcasts (only broadcast rows enter it: changes cost it nothing), and BRINs on
-- position and on captured_at for change replays from a position or a time (positions only
-- grow and rows are logged in capture order, so they stay a few pages and add nothing measurable
-- to an ack). A BRIN only narrows a scan to the page ranges it has summarized: autosummarize
-- has autovacuum summarize each range once it fills, so a replay of recent history reads the
-- last unsummarized range or so, not every page written since the partition's last vacuum.
create index if not exists log_topic on realtime.log (topic, position) where kind = 'broadcast';
do $$
begin
  -- Logs made before autosummarize: the index is rebuilt once (a BRIN build is one pass over
  -- the log, holding off acks meanwhile); a re-run finds it in place and does nothing.
  if exists (select 1 from pg_class c where c.oid = to_regclass('realtime.log_position')
             and not coalesce(c.reloptions @> array['autosummarize=on'], false)) then
    drop index realtime.log_position;
  end if;
end
$$;
create index if not exists log_position on realtime.log using brin (position) with (autosummarize = on);
create index if not exists log_captured_at on realtime.log using brin (captured_at) with (autosummarize = on);

-- One row: the last position handed out, and the horizon (what expiry has removed: positions up
-- to horizon_position, times before horizon_at). A replay asking from before the horizon is told
-- its history is incomplete.
create table if not exists realtime.log_state (
  only_row boolean primary key default true check (only_row),
  last_position bigint not null default 0,
  horizon_position bigint not null default 0,
  horizon_at timestamptz not null default now()
);
revoke all on realtime.log_state from public;
insert into realtime.log_state (only_row) values (true) on conflict (only_row) do nothing;

create or replace function realtime.log_retention() returns interval
language sql stable set search_path = '' as $$
  select make_interval(hours => coalesce(
    (select s.value::integer from realtime.settings s where s.key = 'log_retention_hours'), 72))
$$;

-- realtime.pending (009_owed_frames.sql), each outbox row numbered with the position it takes
-- when acked; owed frames (negative ids) have none. pending returns the owed rows first, then the
-- outbox rows in the order they are acked, so a row's position is the last one handed out plus
-- its rank in that order, counted without a sort: its ordinal less the owed rows before it.
create or replace function realtime.pending_positioned(max_rows integer default 500)
returns table (id bigint, kind text, schema_name text, table_name text, op text, record jsonb,
               old_record jsonb, payload jsonb, captured_at timestamptz, columns jsonb,
               "position" bigint)
language sql stable set search_path = '' as $$
  select p.id, p.kind, p.schema_name, p.table_name, p.op, p.record, p.old_record, p.payload,
         p.captured_at, p.columns,
         case when p.kind <> 'owed' then s.last_position + p.n - w.owed end
  from realtime.pending(max_rows) with ordinality
         as p(id, kind, schema_name, table_name, op, record, old_record, payload, captured_at,
              columns, n)
  cross join realtime.log_state s
  cross join (select least(count(*), max_rows) as owed from realtime.owed) w
  order by p.n
$$;

-- Delivered rows leave the outbox (into the log while retention is on), numbered in the order of
-- `ids` (the drain order: pending's rows, each id once); owed rows whose -id is listed are
-- removed, as in 009_owed_frames.sql.
-- One range of positions per ack (one update of log_state), the setting read once, and every
-- row found through the outbox's primary key: with the log off this is the plain delete of
-- 009_owed_frames.sql; with it on, that delete's rows go straight into the log in one statement,
-- their row images copied as stored (not re-serialised).
create or replace function realtime.ack(ids bigint[])
returns void language plpgsql set search_path = '' as $$
declare
  delivered bigint[] := array(select a.id from unnest(ids) with ordinality as a(id, n)
                              where a.id > 0 order by a.n);
  owed bigint[] := array(select -a.id from unnest(ids) as a(id) where a.id < 0);
  taken integer := cardinality(delivered);
  kept boolean := realtime.log_retention() > interval '0';
  base bigint;
begin
  if taken > 0 then
    -- With the log off nothing is kept, so the horizon follows: a replay spanning that time is
    -- told its history is incomplete instead of silently missing it.
    update realtime.log_state s
    set last_position = s.last_position + taken,
        horizon_position = case when kept then s.horizon_position else s.last_position + taken end,
        horizon_at = case when kept then s.horizon_at else now() end
    returning s.last_position - taken into base;
    if kept then
      with moved as (
        delete from realtime.outbox o where o.id = any (delivered) returning o.*
      )
      insert into realtime.log (position, kind, topic, private, schema_name, table_name, op,
                                record, old_record, payload, captured_at)
      select base + a.n, m.kind,
             case when m.kind = 'broadcast' then m.payload ->> 'topic' end,
             case when m.kind = 'broadcast' then coalesce((m.payload ->> 'private')::boolean, true) end,
             m.schema_name, m.table_name, m.op, m.record, m.old_record, m.payload, m.captured_at
      from moved m join unnest(delivered) with ordinality as a(id, n) on a.id = m.id
      where m.kind in ('change', 'broadcast');
    else
      delete from realtime.outbox o where o.id = any (delivered);
    end if;
  end if;
  if cardinality(owed) > 0 then
    delete from realtime.owed w where w.id = any (owed);
  end if;
end
$$;

-- Keep day partitions for today and the next two days, drop those wholly older than the
-- retention window, and move the horizon past what they held. Returns how many were dropped.
create or replace function realtime.log_maintain(at timestamptz default now())
returns integer language plpgsql set search_path = '' as $$
declare
  keep interval := realtime.log_retention();
  day date;
  part record;
  dropped integer := 0;
  cutoff timestamptz;
begin
  for i in 0..2 loop
    day := (at at time zone 'UTC')::date + i;
    begin
      execute format('create table if not exists realtime.%I partition of realtime.log '
                     'for values from (%L) to (%L)', 'log_' || to_char(day, 'YYYYMMDD'),
                     (day::timestamp at time zone 'UTC'), ((day + 1)::timestamp at time zone 'UTC'));
    exception when check_violation then
      -- Rows for that day already sit in the default partition: they stay there until expiry.
      raise warning 'realtime: log partition for % not created: the default partition holds its rows', day;
    end;
  end loop;
  cutoff := at - keep;
  for part in
    select c.relname,
           (to_date(substr(c.relname, 5), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC' as upper
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    join pg_namespace n on n.oid = c.relnamespace
    where i.inhparent = 'realtime.log'::regclass and n.nspname = 'realtime'
      and c.relname ~ '^log_[0-9]{8}$'
  loop
    continue when part.upper > cutoff;
    execute format('update realtime.log_state set horizon_position = greatest(horizon_position, '
                   '(select coalesce(max(position), 0) from realtime.%I)), '
                   'horizon_at = greatest(horizon_at, %L)', part.relname, part.upper);
    execute format('drop table realtime.%I', part.relname);
    dropped := dropped + 1;
  end loop;
  with gone as (
    delete from realtime.log_default d where d.logged_at < cutoff returning d.position, d.logged_at
  )
  update realtime.log_state set horizon_position = greatest(horizon_position, g.position),
                                horizon_at = greatest(horizon_at, cutoff)
  from (select max(position) as position from gone) g
  where g.position is not null;
  return dropped;
end
$$;

select realtime.log_maintain();

-- Where the log's complete history starts: replays asking from before it are told so.
create or replace function realtime.log_horizon()
returns table (horizon_position bigint, horizon_at timestamptz, last_position bigint, retained boolean)
language sql stable set search_path = '' as $$
  select s.horizon_position, s.horizon_at, s.last_position, realtime.log_retention() > interval '0'
  from realtime.log_state s
$$;

-- The replays read at most a limit's worth of rows through the log's indexes: parallel workers
-- only add their start-up (about 20 ms of a 2 ms replay), so they are not used.
--
-- One topic's logged `realtime.send` messages sent at or after since_ms (epoch milliseconds) or
-- after position `after`, oldest first, at most max_rows; `total` counts every match, so the
-- caller can say how many the limit left out.
create or replace function realtime.replay_broadcast(topic_name text, is_private boolean,
                                                     since_ms double precision, after bigint,
                                                     max_rows integer)
returns table ("position" bigint, event text, payload jsonb, total bigint)
language sql stable set search_path = '' set max_parallel_workers_per_gather = 0 as $$
  select l.position, l.payload ->> 'event', l.payload -> 'payload', count(*) over ()
  from realtime.log l
  where l.kind = 'broadcast' and l.topic = topic_name and l.private = is_private
    and (since_ms is null or l.captured_at >= to_timestamp(since_ms / 1000.0))
    and (after is null or l.position > after)
  order by l.position
  limit max_rows
$$;

-- Logged changes of the given tables ([{"schema", "table"}], "*" for any) after position `after`
-- (and/or captured at or after since_ms), up to position `upto`, oldest first, at most max_rows;
-- shaped like realtime.pending's rows (id is the position) so the live planner takes them as
-- they are. `total` counts every match, so the caller can say how many the limit left out.
create or replace function realtime.replay_changes(tables jsonb, after bigint,
                                                   since_ms double precision, upto bigint,
                                                   max_rows integer)
returns table (id bigint, kind text, schema_name text, table_name text, op text, record jsonb,
               old_record jsonb, payload jsonb, captured_at timestamptz, columns jsonb,
               "position" bigint, total bigint)
language sql stable set search_path = '' set max_parallel_workers_per_gather = 0 as $$
  with wanted as (
    select w ->> 'schema' as s, w ->> 'table' as t from jsonb_array_elements(tables) w
  ),
  taken as (
    select l.*, count(*) over () as total
    from realtime.log l
    where l.kind = 'change' and l.position <= upto
      and (after is null or l.position > after)
      and (since_ms is null or l.captured_at >= to_timestamp(since_ms / 1000.0))
      and exists (select 1 from wanted w where (w.s = '*' or w.s = l.schema_name)
                                           and (w.t = '*' or w.t = l.table_name))
    order by l.position
    limit max_rows
  ),
  cols as (
    select tb.schema_name, tb.table_name,
           jsonb_agg(jsonb_build_object('name', a.attname, 'type', ty.typname) order by a.attnum) as columns
    from (select distinct t.schema_name, t.table_name from taken t) tb
    join pg_namespace n on n.nspname = tb.schema_name
    join pg_class c on c.relnamespace = n.oid and c.relname = tb.table_name
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    join pg_type ty on ty.oid = a.atttypid
    group by tb.schema_name, tb.table_name
  )
  select t.position, t.kind, t.schema_name, t.table_name, t.op, t.record, t.old_record, t.payload,
         t.captured_at, coalesce(c.columns, '[]'::jsonb), t.position, t.total
  from taken t
  left join cols c on c.schema_name = t.schema_name and c.table_name = t.table_name
  order by t.position
$$;
