-- The message log: every change and `realtime.send` message the fanout delivered is kept for
-- the retention window, with its position, so a (re)joining client can replay what it missed.
-- Positions are the drain order (a total order: one drainer holds the drain lock), assigned in
-- the drain's own statements: `pending_positioned` numbers the batch after the last position
-- handed out, `ack` keeps them and advances the counter. A rolled-back batch hands the same
-- numbers out again. Since 013_outbox_log.sql, changes stay in the outbox where the capture
-- trigger wrote them (the acks number them); this file's realtime.log holds the broadcasts.
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

