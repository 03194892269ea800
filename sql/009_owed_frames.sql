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

-- realtime.pending and realtime.ack, which read and remove these rows with the batch, are in
-- 013_outbox_log.sql.
