-- Delivery status webhooks. Each enabled row of public.notification_webhooks receives the
-- events it lists, as signed JSON POSTs sent by the delivery function after its sends (a slow
-- or failing endpoint never holds a send back):
--   delivery.sent / .delivered / .bounced / .complained / .failed   a delivery row reached
--                                                                    that status
--   delivery.read                                                    a recipient read the
--                                                                    in-app copy
-- Every event is a row of public.notification_webhook_calls, written in the transaction that
-- changed the delivery, and retried with backoff until delivered; after max attempts it is
-- left 'dead' (the dead-letter: query it, fix the endpoint, set it 'pending' again).

create table if not exists public.notification_webhooks (
  id uuid primary key default gen_random_uuid(),
  url text not null,
  secret text not null check (length(secret) >= 16),
  events text[] not null default array['delivery.sent', 'delivery.delivered', 'delivery.bounced',
                                       'delivery.complained', 'delivery.failed', 'delivery.read'],
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  -- HTTPS only; plain HTTP to this machine for local development.
  constraint notification_webhooks_url_check
    check (url ~ '^https://[^/?#]+' or url ~ '^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/|$)'),
  constraint notification_webhooks_events_check
    check (cardinality(events) > 0 and events <@ array['delivery.sent', 'delivery.delivered',
      'delivery.bounced', 'delivery.complained', 'delivery.failed', 'delivery.read'])
);

create table if not exists public.notification_webhook_calls (
  id uuid primary key default gen_random_uuid(),
  webhook_id uuid not null references public.notification_webhooks (id) on delete cascade,
  event text not null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_status integer,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz
);
create index if not exists notification_webhook_calls_due_idx
  on public.notification_webhook_calls (next_attempt_at) where status = 'pending';

create or replace function public.notification_webhooks_enqueue(event text, data jsonb)
returns void language sql security definer set search_path = '' as $$
  insert into public.notification_webhook_calls (webhook_id, event, payload)
  select w.id, event, jsonb_build_object('id', gen_random_uuid(), 'type', event,
                                         'created_at', now(), 'data', data)
  from public.notification_webhooks w
  where w.enabled and event = any (w.events)
$$;

create or replace function public.notification_deliveries_webhook() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.status in ('sent', 'delivered', 'bounced', 'complained', 'failed')
     and (tg_op = 'INSERT' or old.status is distinct from new.status) then
    perform public.notification_webhooks_enqueue('delivery.' || new.status, jsonb_build_object(
      'delivery_id', new.id, 'notification_id', new.notification_id, 'user_id', new.user_id,
      'channel', new.channel, 'status', new.status, 'reason', new.reason,
      'provider_message_id', new.provider_message_id, 'attempts', new.attempts));
  end if;
  return null;
end
$$;

create or replace trigger notification_deliveries_webhook
  after insert or update of status on public.notification_deliveries
  for each row execute function public.notification_deliveries_webhook();

create or replace function public.notifications_read_webhook() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform public.notification_webhooks_enqueue('delivery.read', jsonb_build_object(
    'notification_id', coalesce(new.parent_id, new.id), 'inbox_id', new.id,
    'user_id', new.user_id, 'channel', 'in_app', 'read_at', new.read_at));
  return null;
end
$$;

create or replace trigger notifications_read_webhook
  after update of read_at on public.notifications
  for each row when (old.read_at is null and new.read_at is not null and new.user_id is not null)
  execute function public.notifications_read_webhook();

alter table public.notification_webhooks enable row level security;
alter table public.notification_webhook_calls enable row level security;
revoke all on public.notification_webhooks, public.notification_webhook_calls
  from public, anon, authenticated;
grant all on public.notification_webhooks, public.notification_webhook_calls to service_role;
revoke all on function public.notification_webhooks_enqueue(text, jsonb),
                       public.notification_deliveries_webhook(), public.notifications_read_webhook()
  from public, anon, authenticated;
