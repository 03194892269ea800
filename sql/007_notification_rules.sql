-- Delivery rules per notification type: in-app first with escalation, throttles; and
-- cancellation by key. The delivery function reads the rule of a notification's type (or the
-- '*' rule) each time it plans, so a changed rule applies to what is not yet sent.
--
--   escalate_after    email/SMS wait this long after the notification was created and go out
--                     only if the in-app copy is still unread then (reading it records the
--                     waiting deliveries skipped / read_in_app); needs in_app in delivery_method
--   throttle_limit,   at most throttle_limit email (and, separately, SMS) sends per recipient of
--   throttle_window   this type within throttle_window; the rest are skipped / throttled

create table if not exists public.notification_rules (
  type text primary key check (octet_length(type) between 1 and 200),
  escalate_after interval check (escalate_after > interval '0'),
  throttle_limit integer check (throttle_limit > 0),
  throttle_window interval check (throttle_window > interval '0'),
  constraint notification_rules_throttle_check
    check ((throttle_limit is null) = (throttle_window is null))
);

alter table public.notifications add column if not exists cancel_key text;
alter table public.notifications add column if not exists cancelled_at timestamptz;
create index if not exists notifications_cancel_key_idx
  on public.notifications (cancel_key) where cancel_key is not null;

-- Sends counted by the throttle: by recipient, channel and time.
create index if not exists notification_deliveries_user_channel_sent_idx
  on public.notification_deliveries (user_id, channel, sent_at) where sent_at is not null;

-- Withdraws every delivery of the notifications with this cancel_key that has not gone out:
-- deferred ones (quiet hours, escalation pending, retries) become skipped / cancelled, and
-- the notifications are marked so that deliveries not yet planned are skipped too. In-app
-- copies stay in their inboxes. Returns how many notifications and deliveries it withdrew.
create or replace function public.cancel_notifications(key text)
returns table (notifications integer, deliveries integer)
language plpgsql security definer set search_path = '' as $$
declare
  n integer;
  d integer;
begin
  update public.notifications x set cancelled_at = now()
  where x.cancel_key = cancel_notifications.key and x.parent_id is null and x.cancelled_at is null;
  get diagnostics n = row_count;
  update public.notification_deliveries y set status = 'skipped', reason = 'cancelled',
                                              next_attempt_at = null
  where y.status = 'deferred'
    and y.notification_id in (select x.id from public.notifications x
                              where x.cancel_key = cancel_notifications.key
                                and x.parent_id is null);
  get diagnostics d = row_count;
  return query select n, d;
end
$$;

-- Reading the in-app copy (REST or SQL) withdraws the email/SMS still waiting to escalate it.
create or replace function public.notifications_read_cancels_escalation() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.notification_deliveries d set status = 'skipped', reason = 'read_in_app',
                                              next_attempt_at = null
  where d.notification_id = coalesce(new.parent_id, new.id) and d.user_id = new.user_id
    and d.status = 'deferred' and d.reason = 'escalation';
  return null;
end
$$;

create or replace trigger notifications_read_cancels_escalation
  after update of read_at on public.notifications
  for each row when (old.read_at is null and new.read_at is not null and new.user_id is not null)
  execute function public.notifications_read_cancels_escalation();

alter table public.notification_rules enable row level security;
revoke all on public.notification_rules from public, anon, authenticated;
grant all on public.notification_rules to service_role;
revoke all on function public.cancel_notifications(text),
                       public.notifications_read_cancels_escalation()
  from public, anon, authenticated;
grant execute on function public.cancel_notifications(text) to service_role;

-- Digests. digest_window: email/SMS of this type that would go out now wait as one digest per
-- recipient, channel and key, sent when the window (opened by the first of them) closes, with
-- every member listed to its template. digest_key names the batch: '{type}' (the default),
-- or a template of {type}, {organization_id} and {data.<field>} such as
-- '{type}:{organization_id}'. A digest is one delivery row (deferred / digest until it is
-- sent); each member's row is skipped / digested with digest_id naming it. In-app copies stay
-- one per notification. With a throttle too, what the throttle holds back joins the digest.
alter table public.notification_rules add column if not exists digest_window interval;
alter table public.notification_rules add column if not exists digest_key text;
do $$ begin
  alter table public.notification_rules add constraint notification_rules_digest_check
    check (digest_window > interval '0' and (digest_key is null or digest_key <> '')
           or digest_window is null and digest_key is null);
exception when duplicate_object then null;
end $$;

alter table public.notification_deliveries add column if not exists digest_key text;
alter table public.notification_deliveries add column if not exists digest_id uuid
  references public.notification_deliveries (id) on delete set null;
create index if not exists notification_deliveries_open_digest_idx
  on public.notification_deliveries (digest_key, user_id, channel)
  where status = 'deferred' and reason = 'digest';
create index if not exists notification_deliveries_digest_idx
  on public.notification_deliveries (digest_id) where digest_id is not null;

-- What delivery knows about a notification, per recipient and requested email/SMS channel:
-- why the user is a recipient, what their preferences, the suppression list, quiet hours and
-- the type's rule say, and the delivery row's status and reason (the decision recorded, with
-- its rule in the reason: opted_out, quiet_hours, suppressed, throttled, digest / digested,
-- escalation, read_in_app, cancelled, recipient_unknown …). GET /api/notifications/{id}/explain
-- answers what the planner would decide now, through the same code as delivery.
create or replace function public.notification_explain(notification_id uuid)
returns table (user_id uuid, channel text, target text, preference_enabled boolean,
               suppressed boolean, quiet_hours text, rule jsonb, status text, reason text)
language sql stable set search_path = '' as $$
  with n as (
    select * from public.notifications x
    where x.id = notification_explain.notification_id and x.parent_id is null
  ),
  asked as (
    select m as channel from n, unnest(n.delivery_method) m where m in ('email', 'sms')
  ),
  people as (
    select r.user_id, r.role, r.channels, r.suppressed, r.quiet_hours_start, r.quiet_hours_end,
           r.quiet_hours_timezone
    from public.notification_recipients_for(notification_explain.notification_id) r
    union all
    -- A targeted user the recipients view does not know.
    select n.user_id, null, null, null, null, null, null from n
    where n.user_id is not null
      and not exists (select 1 from public.notification_recipients_v v where v.user_id = n.user_id)
  )
  select p.user_id, a.channel,
         case when n.user_id is not null then 'user_id' else 'role_target: ' || p.role end,
         case when p.channels is null then null else a.channel = any (p.channels) end,
         coalesce(a.channel = any (p.suppressed), false),
         case when p.quiet_hours_start is not null
              then format('%s-%s %s', p.quiet_hours_start, p.quiet_hours_end,
                          p.quiet_hours_timezone) end,
         (select to_jsonb(r) - 'type' from public.notification_rules r
          where r.type in (n.type, '*') order by r.type = '*' limit 1),
         d.status, d.reason
  from n cross join asked a cross join people p
  left join public.notification_deliveries d
    on d.notification_id = n.id and d.user_id = p.user_id and d.channel = a.channel
  order by p.user_id, a.channel
$$;

revoke all on function public.notification_explain(uuid) from public, anon, authenticated;
grant execute on function public.notification_explain(uuid) to service_role;
