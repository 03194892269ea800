-- What the delivery function reads and writes, each a single statement.

-- Notification wake-ups not yet handled (kept until the delivery function acknowledges them
-- with realtime.ack(ids); the claims in notification_deliveries make a second pass send nothing).
create or replace function realtime.pending_notifications(max_rows integer default 100)
returns table (id bigint, notification_id uuid)
language sql stable set search_path = '' as $$
  select o.id, (o.payload ->> 'notification_id')::uuid
  from realtime.outbox o
  where o.kind = 'notification'
  order by o.id
  limit max_rows
$$;
