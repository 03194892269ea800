-- The outbox is the change log. A change's row images are written once, by the capture trigger
-- in the writer's transaction, and stay where they were written: an ack no longer copies them
-- anywhere. It marks them delivered (one update of realtime.log_state) and records the batch's
-- positions as one row of realtime.log_acks: the batch's ids (a multirange: pending hands rows
-- out in id order, so a batch is usually one run of ids) and the first position they took.
-- Replays of postgres_changes read the outbox through those rows.
--
-- `realtime.send` messages still move into realtime.log at ack (012_message_log.sql): a topic's
-- broadcast replay reads them through the (topic, position) index, which needs each row's
-- position. A batch without broadcasts moves nothing.
--
-- What is delivered: `log_state.settled`, a multirange of outbox ids. It always covers every
-- delivered id; everything below its first gap is settled for good (delivered, a notification
-- the delivery function handles, or an id no row will ever have). realtime.pending reads only
-- the gaps and what lies above them, through the primary key, so delivered rows cost a read
-- nothing however many the log keeps.
--
-- Gaps are ids the drain has not seen: rows not yet committed, rolled back, or another
-- consumer's. The ack closes them only when it can prove no row will ever appear there: it
-- samples the id sequence, then, in a later ack, the transaction-id horizon (the snapshot's
-- xmax); once every transaction below that horizon has ended, every id up to the sample is
-- final, and the ack settles up to the lowest undelivered row among them. This relies on one
-- rule: a transaction has its xid before it draws an outbox id (the capture trigger runs after
-- the app's row is written; realtime.send, in 004_broadcast.sql, asks for the xid first). A
-- long-running writer delays only this tidying, never a delivery.
--
-- Expiry stays a partition drop: the outbox, realtime.log_acks and realtime.log are partitioned
-- by day, and realtime.log_maintain drops what is past the retention window (an outbox day only
-- once all its rows are settled and no remaining ack points into it).

-- The outbox, partitioned by day on captured_at. An outbox made before this file is moved
-- into one (its rows are all undelivered: ack deleted delivered rows), with the same ids.
do $$
declare
  next_id bigint;
begin
  if (select c.relkind from pg_class c where c.oid = 'realtime.outbox'::regclass) = 'p' then
    return;
  end if;
  lock table realtime.outbox in access exclusive mode;
  alter table realtime.outbox rename to outbox_unpartitioned;
  select coalesce(greatest(max(id), (select s.last_value from realtime.outbox_id_seq s)), 0) + 1
    into next_id from realtime.outbox_unpartitioned;
  alter table realtime.outbox_unpartitioned alter column id drop identity;
  alter table realtime.outbox_unpartitioned rename constraint outbox_pkey to outbox_unpartitioned_pkey;
  -- Same columns, defaults and checks; the key adds the partition column.
  create table realtime.outbox (
    like realtime.outbox_unpartitioned including defaults including constraints,
    primary key (id, captured_at)
  ) partition by range (captured_at);
  execute format('alter table realtime.outbox alter column id add generated always as identity '
                 '(start with %s)', next_id);
  create table realtime.outbox_default partition of realtime.outbox default;
  insert into realtime.outbox (id, xid, kind, schema_name, table_name, op, record, old_record,
                               payload, captured_at)
    overriding system value
    select id, xid, kind, schema_name, table_name, op, record, old_record, payload, captured_at
    from realtime.outbox_unpartitioned;
  drop table realtime.outbox_unpartitioned;
  revoke all on realtime.outbox from public;
  create constraint trigger realtime_wake after insert on realtime.outbox
    deferrable initially deferred for each row execute function realtime.wake();
  -- Change rows an earlier version copied into realtime.log are not carried over: the horizon
  -- moves past them, so a replay from before this upgrade is told to refetch, never handed a
  -- partial history.
  if exists (select 1 from realtime.log where kind = 'change') then
    delete from realtime.log where kind = 'change';
    update realtime.log_state set horizon_position = last_position, horizon_at = now();
  end if;
end
$$;

-- The delivery function's queue, read without touching the kept changes.
create index if not exists outbox_notifications on realtime.outbox (id) where kind = 'notification';

alter table realtime.log_state add column if not exists settled int8multirange not null default '{}';
alter table realtime.log_state add column if not exists sample_id bigint;
alter table realtime.log_state add column if not exists sample_xid xid8;

-- One row per acked batch while the log is on: the batch's outbox ids, `taken` of them, the
-- position of the first. The drain delivers a batch in id order, so the n-th id of `ids` (in
-- ascending order) took position first_position + n - 1 (realtime.ack_runs).
create table if not exists realtime.log_acks (
  first_position bigint not null,
  ids int8multirange not null,
  taken integer not null,
  lo_id bigint not null,
  acked_at timestamptz not null default now()
) partition by range (acked_at);
revoke all on realtime.log_acks from public;
create table if not exists realtime.log_acks_default partition of realtime.log_acks default;
create index if not exists log_acks_position on realtime.log_acks (first_position);
create index if not exists log_acks_lo_id on realtime.log_acks (lo_id);
create index if not exists log_acks_acked_at on realtime.log_acks (acked_at);

-- Each run of an ack's ids, [lo, hi), with the position its first id took: id x of the run
-- took first + x - lo.
create or replace function realtime.ack_runs(first_position bigint, ids int8multirange)
returns table (lo bigint, hi bigint, first bigint)
language sql immutable set search_path = '' as $$
  select lower(r), upper(r),
         first_position + coalesce(sum(upper(r) - lower(r)) over (order by lower(r)
                                   rows between unbounded preceding and 1 preceding), 0)
  from unnest(ids) r
$$;

-- The outbox ids the drain has not delivered: gaps of `settled`, then everything above it.
-- Scans of a range bound both ends with coalesce(lower/upper, the bigint limits), so both are
-- index conditions: a gap's scan stops at its upper end instead of filtering every kept row
-- above it.
create or replace function realtime.undelivered() returns setof int8range
language sql stable set search_path = '' as $$
  select g.r from realtime.log_state s, unnest('{(,)}'::int8multirange - s.settled) g(r)
$$;

-- Drain, in two steps inside one transaction that holds the drain lock: `pending` reads up to
-- max_rows rows — owed frames first, then committed outbox rows not yet delivered, in write
-- order, each change with its table's columns as the postgres_changes payload lists them;
-- `ack` marks the ones delivered. A single drainer keeps per-row order: two writes to one row
-- serialize on the row lock, so the later one is always written, committed and drained after the
-- earlier.
-- Owed frames (009_owed_frames.sql) come first; outbox rows are read from the undelivered ranges
-- only.
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
  room as (select greatest(0, max_rows - (select count(*) from owed)) as n),
  taken as (
    -- Notification rows belong to the delivery function, which drains them itself.
    select o.id, o.kind, o.schema_name, o.table_name, o.op, o.record, o.old_record, o.payload,
           o.captured_at
    -- Through the function: with the unnest written out here the planner picked a plan that
    -- read 500 rows 2.5x slower (bench/retention.py).
    from realtime.undelivered() g(r)
    cross join room
    cross join lateral (
      select o.* from realtime.outbox o
      where o.id >= coalesce(lower(g.r), -9223372036854775808)
        and o.id < coalesce(upper(g.r), 9223372036854775807)
        and o.kind <> 'notification'
      order by o.id
      limit room.n
    ) o
    order by o.id
    limit (select n from room)
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

-- realtime.pending, each outbox row numbered with the position it takes
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

-- The drain's read: the drain lock, then realtime.pending_positioned, in one round trip. The
-- read is a statement of its own after the lock inside a volatile function, so it runs on a
-- snapshot taken once the lock is held: it sees the ack of the drain that held the lock while
-- this one waited (one statement calling both would read from before the wait and take that
-- batch again).
create or replace function realtime.drain_pending(max_rows integer default 500)
returns table (id bigint, kind text, schema_name text, table_name text, op text, record jsonb,
               old_record jsonb, payload jsonb, captured_at timestamptz, columns jsonb,
               "position" bigint)
language plpgsql volatile set search_path = '' as $$
begin
  perform pg_advisory_xact_lock(hashtext('realtime.drain'));
  return query select * from realtime.pending_positioned(max_rows);
end
$$;

-- The drain's ack: `delivered` are the outbox ids of the batch, which pending handed out in id
-- order, so the n-th of them takes the n-th next position; `owed` the owed frames delivered or
-- owed again (their ids, positive); `broadcasts` which delivered ids are `realtime.send`
-- messages (they move into realtime.log). The ids are settled; with the log on, the batch is
-- one row of realtime.log_acks and the change rows stay where they are; with it off they are
-- deleted, as before the log. The drain holds the drain lock, so it alone moves the positions.
drop function if exists realtime.ack(bigint[], bigint[]);
create or replace function realtime.ack(delivered int8multirange, owed bigint[], broadcasts bigint[])
returns void language plpgsql set search_path = '' as $$
declare
  -- Taken before this transaction writes anything, so it has no xid of its own in it.
  snap pg_snapshot := pg_current_snapshot();
  taken bigint := (select coalesce(sum(upper(r) - lower(r)), 0) from unnest(delivered) r);
  kept boolean := realtime.log_retention() > interval '0';
  state realtime.log_state%rowtype;
  done int8multirange;
  final bigint;
  lowest bigint;
  base bigint;
begin
  if cardinality(owed) > 0 then
    delete from realtime.owed w where w.id = any (owed);
  end if;
  if taken = 0 then
    return;
  end if;
  select * into state from realtime.log_state for update;
  base := state.last_position;
  done := state.settled + delivered;
  -- Tidy the gaps below the sample once no transaction that could still write there is running.
  if state.sample_xid is null then
    state.sample_xid := pg_snapshot_xmax(snap);
  elsif pg_snapshot_xmin(snap) >= state.sample_xid then
    final := state.sample_id;
    select min(o.id) into lowest
    from unnest('{(,)}'::int8multirange - done) g(r)
    cross join lateral (
      select o.id from realtime.outbox o
      where o.id >= coalesce(lower(g.r), -9223372036854775808)
        and o.id <= final and o.id < coalesce(upper(g.r), 9223372036854775807)
        and o.kind <> 'notification'
      order by o.id limit 1
    ) o
    where coalesce(lower(g.r), -9223372036854775808) <= final;
    done := done + int8multirange(int8range(null, coalesce(lowest, final + 1)));
    state.sample_id := null;
    state.sample_xid := null;
  end if;
  if state.sample_id is null then
    -- The highest id handed out so far (none yet: the one before the first).
    state.sample_id := (select case when s.is_called then s.last_value else s.last_value - 1 end
                        from realtime.outbox_id_seq s);
    state.sample_xid := null;
  end if;
  -- With the log off nothing is kept, so the horizon follows: a replay spanning that time is
  -- told its history is incomplete instead of silently missing it.
  update realtime.log_state s
  set last_position = s.last_position + taken,
      settled = done,
      sample_id = state.sample_id,
      sample_xid = state.sample_xid,
      horizon_position = case when kept then s.horizon_position else s.last_position + taken end,
      horizon_at = case when kept then s.horizon_at else now() end;
  if not kept then
    delete from realtime.outbox o using unnest(delivered) r
    where o.id >= lower(r) and o.id < upper(r) and o.kind <> 'notification';
    return;
  end if;
  insert into realtime.log_acks (first_position, ids, taken, lo_id)
  values (base + 1, delivered, taken, lower(delivered));
  if cardinality(broadcasts) > 0 then
    with moved as (
      delete from realtime.outbox o where o.id = any (broadcasts) and o.kind = 'broadcast'
      returning o.*
    )
    insert into realtime.log (position, kind, topic, private, payload, captured_at)
    select s.first + m.id - s.lo, 'broadcast', m.payload ->> 'topic',
           coalesce((m.payload ->> 'private')::boolean, true), m.payload, m.captured_at
    from moved m join realtime.ack_runs(base + 1, delivered) s on m.id >= s.lo and m.id < s.hi;
  end if;
end
$$;

-- The one-argument ack of 012, which functions from before this file still call: the drain
-- with a batch as pending hands it out (owed frames as -id, then outbox ids ascending), the
-- delivery function with its notification rows. One read of the rows sorts them out.
create or replace function realtime.ack(ids bigint[])
returns void language plpgsql set search_path = '' as $$
declare
  notifications bigint[];
  broadcasts bigint[];
  delivered int8multirange;
begin
  -- Only rows still there count as delivered: a notification row another call removed first
  -- must not take a position.
  select coalesce(array_agg(o.id) filter (where o.kind = 'notification'), '{}'),
         coalesce(array_agg(o.id) filter (where o.kind = 'broadcast'), '{}'),
         coalesce(range_agg(int8range(o.id, o.id + 1)) filter (where o.kind <> 'notification'), '{}')
    into notifications, broadcasts, delivered
  from realtime.outbox o where o.id = any (ids) and o.id > 0;
  perform realtime.ack_notifications(notifications);
  perform realtime.ack(delivered, array(select -a from unnest(ids) a where a < 0), broadcasts);
end
$$;

-- The delivery function's ack: its notification rows leave the outbox. They take no positions
-- and are not the drain's to settle.
create or replace function realtime.ack_notifications(ids bigint[])
returns void language sql set search_path = '' as $$
  delete from realtime.outbox o where o.id = any (ids) and o.kind = 'notification';
$$;

-- The change and broadcast rows not yet delivered, for inspecting (the drain reads pending).
create or replace view realtime.outbox_pending as
  select o.* from realtime.undelivered() g(r)
  cross join lateral (
    select o.* from realtime.outbox o
    where o.id >= coalesce(lower(g.r), -9223372036854775808)
      and o.id < coalesce(upper(g.r), 9223372036854775807) and o.kind <> 'notification'
  ) o;
revoke all on realtime.outbox_pending from public;

-- Every logged entry with its position: changes from the outbox through their acks, broadcasts
-- from realtime.log. For reading and inspecting; the replays read the tables directly.
create or replace view realtime.log_entries as
  select u.first + o.id - u.lo as position, o.kind, null::text as topic, null::boolean as private,
         o.schema_name, o.table_name, o.op, o.record, o.old_record, o.payload, o.captured_at,
         a.acked_at as logged_at
  from realtime.log_acks a
  cross join lateral realtime.ack_runs(a.first_position, a.ids) u
  join realtime.outbox o on o.id >= u.lo and o.id < u.hi and o.kind = 'change'
  union all
  select l.position, l.kind, l.topic, l.private, l.schema_name, l.table_name, l.op, l.record,
         l.old_record, l.payload, l.captured_at, l.logged_at
  from realtime.log l;
revoke all on realtime.log_entries from public;

-- Logged changes, as in 012_message_log.sql, read from the outbox through the acks that gave
-- them their positions: the acks from the one holding position after + 1 on (or acked at or
-- after since_ms: a row is acked after it is captured), each run of ids one range scan.
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
  first_ack as (
    select case when after is not null then
             (select coalesce(max(a.first_position), 0) from realtime.log_acks a
              where a.first_position <= after + 1)
           else (select coalesce(min(a.first_position), 0) from realtime.log_acks a
                 where a.acked_at >= to_timestamp(since_ms / 1000.0)) end as position
  ),
  runs as (
    select u.lo, u.hi, u.first
    from first_ack f
    join realtime.log_acks a on a.first_position >= f.position and a.first_position <= upto
    cross join lateral realtime.ack_runs(a.first_position, a.ids) u
  ),
  -- Each run is one range scan of the outbox's primary key (a lateral subquery, so the planner
  -- never trades it for a scan of the whole kept log).
  slots as (
    select r.first + o.id - r.lo as position, o.*
    from runs r
    cross join lateral (
      select o.* from realtime.outbox o where o.id >= r.lo and o.id < r.hi offset 0
    ) o
  ),
  taken as (
    select s.position, s.kind, s.schema_name, s.table_name, s.op, s.record, s.old_record,
           s.payload, s.captured_at, count(*) over () as total
    from slots s
    where s.kind = 'change' and s.position <= upto
      and (after is null or s.position > after)
      and (since_ms is null or s.captured_at >= to_timestamp(since_ms / 1000.0))
      and exists (select 1 from wanted w where (w.s = '*' or w.s = s.schema_name)
                                           and (w.t = '*' or w.t = s.table_name))
    order by s.position
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

-- Day partitions `prefix`_YYYYMMDD of `parent` for the day of `at` and the next two.
create or replace function realtime.make_day_partitions(parent text, prefix text, at timestamptz)
returns void language plpgsql set search_path = '' as $$
declare
  day date;
begin
  for i in 0..2 loop
    day := (at at time zone 'UTC')::date + i;
    begin
      execute format('create table if not exists realtime.%I partition of realtime.%I '
                     'for values from (%L) to (%L)', prefix || '_' || to_char(day, 'YYYYMMDD'), parent,
                     (day::timestamp at time zone 'UTC'), ((day + 1)::timestamp at time zone 'UTC'));
    exception
      when check_violation then
        -- Rows for that day already sit in the default partition: they stay there until expiry.
        raise warning 'realtime: % partition for % not created: the default partition holds its rows', parent, day;
      when lock_not_available then
        raise warning 'realtime: % partition for % not created yet: the table was busy', parent, day;
    end;
  end loop;
end
$$;

-- The day partitions of `parent` named `prefix`_YYYYMMDD that end at or before `cutoff`.
create or replace function realtime.expired_days(parent text, prefix text, cutoff timestamptz)
returns table (relname text, upper timestamptz)
language sql stable set search_path = '' as $$
  select c.relname::text, (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC'
  from pg_inherits i
  join pg_class c on c.oid = i.inhrelid
  join pg_namespace n on n.oid = c.relnamespace
  where i.inhparent = ('realtime.' || parent)::regclass and n.nspname = 'realtime'
    and c.relname ~ ('^' || prefix || '_[0-9]{8}$')
    and (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC' <= cutoff
  order by 2
$$;

-- Drop one expired day partition of the log or the acks, first moving the horizon past the last
-- position it held (`top`, an aggregate over its rows) and its end. 1 if dropped, 0 if the
-- table was busy past lock_timeout (left for the next run).
create or replace function realtime.drop_day(relname text, upper timestamptz, top text)
returns integer language plpgsql set search_path = '' as $$
begin
  execute format('update realtime.log_state set horizon_position = greatest(horizon_position, '
                 '(select coalesce(%s, 0) from realtime.%I)), horizon_at = greatest(horizon_at, %L)',
                 top, relname, upper);
  execute format('drop table realtime.%I', relname);
  return 1;
exception when lock_not_available then
  raise warning 'realtime: % not dropped yet: the table was busy', relname;
  return 0;
end
$$;

-- Keep day partitions for today and the next two days, drop those wholly older than the
-- retention window, and move the horizon past what they held. Returns how many were dropped.
-- realtime.log (broadcasts) and realtime.log_acks (change positions) expire by their day; an
-- outbox day only once every row in it is settled, none is a notification still queued, and no
-- remaining ack points into it, so a position a replay can reach always has its row. Each drop
-- waits at most lock_timeout for the table: one the app's writers keep busy is left for the next
-- run, never queueing those writers behind it.
create or replace function realtime.log_maintain(at timestamptz default now())
returns integer language plpgsql set search_path = '' as $$
declare
  keep interval := realtime.log_retention();
  part record;
  dropped integer := 0;
  cutoff timestamptz := at - keep;
  top bigint;
  oldest_ack bigint;
  queued boolean;
begin
  perform set_config('lock_timeout', '2s', true);
  perform realtime.make_day_partitions('log', 'log', at);
  perform realtime.make_day_partitions('log_acks', 'log_acks', at);
  perform realtime.make_day_partitions('outbox', 'outbox', at);
  for part in select * from realtime.expired_days('log', 'log', cutoff) loop
    dropped := dropped + realtime.drop_day(part.relname, part.upper, 'max(position)');
  end loop;
  -- A row is acked after it is captured: a replay from before an ack day's end may have lost
  -- rows captured before it.
  for part in select * from realtime.expired_days('log_acks', 'log_acks', cutoff) loop
    dropped := dropped + realtime.drop_day(part.relname, part.upper, 'max(first_position + taken - 1)');
  end loop;
  -- Rows logged where no day partition was: expired with a DELETE.
  with gone as (
    delete from realtime.log_default d where d.logged_at < cutoff returning d.position
  )
  update realtime.log_state set horizon_position = greatest(horizon_position, g.position),
                                horizon_at = greatest(horizon_at, cutoff)
  from (select max(position) as position from gone) g
  where g.position is not null;
  with gone as (
    delete from realtime.log_acks_default d where d.acked_at < cutoff
    returning d.first_position + d.taken - 1 as position
  )
  update realtime.log_state set horizon_position = greatest(horizon_position, g.position),
                                horizon_at = greatest(horizon_at, cutoff)
  from (select max(position) as position from gone) g
  where g.position is not null;
  select min(a.lo_id) into oldest_ack from realtime.log_acks a;
  for part in select * from realtime.expired_days('outbox', 'outbox', cutoff) loop
    execute format('select max(id) from realtime.%I', part.relname) into top;
    -- Still pointed into by an ack a replay can reach...
    continue when top is not null and oldest_ack is not null and oldest_ack <= top;
    -- ...or holding a row not yet delivered, or a notification still queued. (A row still
    -- being written holds a lock the drop would have to wait for: it is left for the next run.)
    execute format($q$select exists (select 1 from realtime.%1$I o where o.kind = 'notification')
                      or exists (select 1 from realtime.undelivered() g(r) cross join lateral (
                        select 1 from realtime.%1$I o
                        where o.id >= coalesce(lower(g.r), -9223372036854775808)
                          and o.id < coalesce(upper(g.r), 9223372036854775807) limit 1) x)$q$,
                   part.relname) into queued;
    continue when queued;
    begin
      execute format('drop table realtime.%I', part.relname);
      update realtime.log_state set horizon_at = greatest(horizon_at, part.upper);
      dropped := dropped + 1;
    exception when lock_not_available then
      raise warning 'realtime: % not dropped yet: the table was busy', part.relname;
    end;
  end loop;
  delete from realtime.outbox_default d
  where d.captured_at < cutoff and d.kind <> 'notification'
    and (oldest_ack is null or d.id < oldest_ack)
    and not exists (select 1 from realtime.undelivered() g(r) where g.r @> d.id);
  return dropped;
end
$$;

select realtime.log_maintain();
