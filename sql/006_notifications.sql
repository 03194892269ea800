-- Notifications: the in-app inbox, per-user preferences and quiet hours, and the records of
-- email/SMS delivery.
--
-- A row in public.notifications targets one user (user_id) or roles within an organization
-- (role_target). A role-targeted row is fanned out at insert into one copy per recipient
-- (user_id set, parent_id = the original), so every in-app message is a row with the
-- recipient's user_id: `postgres_changes` with `filter: 'user_id=eq.<me>'` delivers it and RLS
-- lets only that user read it. Each original row also writes one 'notification' row to
-- realtime.outbox, which wakes the delivery function at commit; it resolves recipients with
-- public.notification_recipients_for(id) and records one public.notification_deliveries row
-- per (notification, recipient, channel).
--
-- Apps resolve recipients their own way by redefining public.notification_recipients_v; this
-- file creates it only if it is absent, so a redefinition survives re-running migrations.

create or replace function public.is_valid_timezone(tz text) returns boolean
language sql stable set search_path = '' as $$
  select exists (select 1 from pg_catalog.pg_timezone_names z where z.name = tz)
$$;

create table if not exists public.notifications (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid,
  user_id uuid,
  role_target text[],
  parent_id uuid references public.notifications (id) on delete cascade,
  type text not null,
  title text not null,
  message text not null,
  priority text not null default 'normal',
  delivery_method text[] not null default '{in_app}',
  action_url text,
  data jsonb not null default '{}',
  read_at timestamptz,
  seen_at timestamptz,
  archived_at timestamptz,
  created_at timestamptz not null default now(),
  constraint notifications_target_check
    check ((user_id is null) <> (role_target is null)),
  constraint notifications_role_target_check
    check (role_target is null or (cardinality(role_target) > 0 and organization_id is not null)),
  constraint notifications_copy_check
    check (parent_id is null or user_id is not null),
  constraint notifications_priority_check
    check (priority in ('low', 'normal', 'high', 'urgent')),
  constraint notifications_delivery_method_check
    check (cardinality(delivery_method) > 0 and delivery_method <@ array['in_app', 'email', 'sms'])
);

-- The inbox states beside read_at, for databases created before them.
alter table public.notifications add column if not exists seen_at timestamptz;
alter table public.notifications add column if not exists archived_at timestamptz;

-- A type names templates and travels inside signed unsubscribe links: at most 200 bytes.
do $$ begin
  alter table public.notifications add constraint notifications_type_check
    check (octet_length(type) between 1 and 200);
exception when duplicate_object then null;
end $$;

create index if not exists notifications_user_created_idx
  on public.notifications (user_id, created_at desc);
create index if not exists notifications_user_unread_idx
  on public.notifications (user_id) where read_at is null;
create index if not exists notifications_organization_idx
  on public.notifications (organization_id);
-- One in-app copy per recipient, found by (original, user).
create unique index if not exists notifications_parent_user_idx
  on public.notifications (parent_id, user_id) where parent_id is not null;

-- type '*' applies to every type; a row for the exact type wins over '*'. No row: enabled.
create table if not exists public.notification_preferences (
  user_id uuid not null,
  type text not null check (type <> ''),
  channel text not null check (channel in ('in_app', 'email', 'sms')),
  enabled boolean not null default true,
  primary key (user_id, type, channel)
);

-- Quiet hours are wall-clock times in `timezone`; a start after the end spans midnight.
create table if not exists public.notification_settings (
  user_id uuid primary key,
  quiet_hours_start time,
  quiet_hours_end time,
  timezone text not null default 'UTC',
  constraint notification_settings_timezone_check check (public.is_valid_timezone(timezone)),
  constraint notification_settings_quiet_hours_check
    check ((quiet_hours_start is null) = (quiet_hours_end is null))
);

-- One row per (notification, recipient, channel): the idempotency key of delivery.
create table if not exists public.notification_deliveries (
  id uuid primary key default gen_random_uuid(),
  notification_id uuid not null references public.notifications (id) on delete cascade,
  user_id uuid not null,
  channel text not null check (channel in ('in_app', 'email', 'sms')),
  address text,
  status text not null default 'queued'
    check (status in ('queued', 'sent', 'delivered', 'bounced', 'complained', 'failed',
                      'skipped', 'suppressed', 'deferred')),
  reason text,
  provider_message_id text,
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  sent_at timestamptz,
  unique (notification_id, user_id, channel)
);

create index if not exists notification_deliveries_due_idx
  on public.notification_deliveries (status, next_attempt_at);
create index if not exists notification_deliveries_provider_idx
  on public.notification_deliveries (provider_message_id) where provider_message_id is not null;
create index if not exists notification_deliveries_user_idx
  on public.notification_deliveries (user_id);

create or replace function public.notification_deliveries_touch() returns trigger
language plpgsql set search_path = '' as $$
begin
  new.updated_at := now();
  return new;
end
$$;

create or replace trigger notification_deliveries_touch
  before update on public.notification_deliveries
  for each row execute function public.notification_deliveries_touch();

-- Addresses never to send to again: emails lowercased, phones in E.164.
create table if not exists public.notification_suppressions (
  address text primary key,
  channel text not null check (channel in ('email', 'sms')),
  reason text not null check (reason in ('bounce', 'complaint', 'unsubscribe', 'opt_out')),
  created_at timestamptz not null default now(),
  constraint notification_suppressions_address_check
    check (case channel when 'email' then address = lower(address) and address like '%@%'
                        else address ~ '^\+[1-9][0-9]{1,14}$' end)
);

-- Who can be notified. The default profiles table, created only if the app has none.
do $$
begin
  if pg_catalog.to_regclass('public.profiles') is null then
    create table public.profiles (
      id uuid primary key,
      organization_id uuid,
      role text,
      full_name text,
      email text,
      phone text,
      locale text default 'en',
      timezone text default 'UTC',
      deleted_at timestamptz
    );
    create index profiles_organization_role_idx on public.profiles (organization_id, role)
      where deleted_at is null;
    alter table public.profiles enable row level security;
    create policy "profiles: read own" on public.profiles for select to authenticated
      using (id = (select auth.uid()));
    revoke all on public.profiles from public, anon, authenticated;
    grant select on public.profiles to authenticated;
    grant all on public.profiles to service_role;
  end if;
end
$$;

-- The recipients view, created only if absent so that an app's own definition is kept. Built
-- from public.profiles; a column the app's profiles table lacks reads as null (locale 'en',
-- timezone 'UTC'): redefine the view to map it.
do $$
declare
  wanted constant text[] := array[
    'organization_id', 'uuid', 'null',
    'role', 'text', 'null',
    'full_name', 'text', 'null',
    'email', 'text', 'null',
    'phone', 'text', 'null',
    'locale', 'text', '''en''',
    'timezone', 'text', '''UTC'''];
  cols text := 'p.id::uuid as user_id';
  i integer;
begin
  if pg_catalog.to_regclass('public.notification_recipients_v') is not null then
    return;
  end if;
  for i in 1 .. array_length(wanted, 1) by 3 loop
    if exists (select 1 from pg_catalog.pg_attribute a
               where a.attrelid = 'public.profiles'::regclass and a.attname = wanted[i]
                 and a.attnum > 0 and not a.attisdropped) then
      cols := cols || case when wanted[i + 2] = 'null'
                           then format(', p.%I::%s as %I', wanted[i], wanted[i + 1], wanted[i])
                           else format(', coalesce(p.%I::%s, %s) as %I',
                                       wanted[i], wanted[i + 1], wanted[i + 2], wanted[i]) end;
    else
      cols := cols || format(', %s::%s as %I', wanted[i + 2], wanted[i + 1], wanted[i]);
    end if;
  end loop;
  execute format('create view public.notification_recipients_v as select %s from public.profiles p%s',
                 cols,
                 case when exists (select 1 from pg_catalog.pg_attribute a
                                   where a.attrelid = 'public.profiles'::regclass
                                     and a.attname = 'deleted_at' and a.attnum > 0
                                     and not a.attisdropped)
                      then ' where p.deleted_at is null' else '' end);
  -- Contact details of every user: for the delivery function only.
  revoke all on public.notification_recipients_v from public, anon, authenticated;
  grant select on public.notification_recipients_v to service_role;
end
$$;

-- The recipients of an original notification, with what delivery needs about each, in one
-- query: the targeted user, or every recipient with a targeted role in the organization.
--   inbox_id     the recipient's in-app row (the notification itself, or their copy)
--   channels     the notification's delivery_method minus the channels the recipient's
--                preferences disable for its type
--   suppressed   those of email/sms whose address is on the suppression list
--   quiet_hours_start, quiet_hours_end, quiet_hours_timezone   from notification_settings
-- A plain (not BEGIN ATOMIC) body, so the view can be dropped and recreated freely.
create or replace function public.notification_recipients_for(notification_id uuid)
returns table (user_id uuid, organization_id uuid, role text, full_name text, email text,
               phone text, locale text, timezone text, inbox_id uuid, channels text[],
               suppressed text[], quiet_hours_start time, quiet_hours_end time,
               quiet_hours_timezone text)
language sql stable set search_path = '' as $$
  with n as (
    select * from public.notifications x
    where x.id = notification_recipients_for.notification_id and x.parent_id is null
  ),
  targeted as (
    select distinct on (r.user_id) r.*
    from (select r.* from n join public.notification_recipients_v r on r.user_id = n.user_id
          union all
          select r.* from n join public.notification_recipients_v r
            on r.organization_id = n.organization_id and r.role = any (n.role_target)) r
    order by r.user_id
  )
  select r.user_id, r.organization_id, r.role, r.full_name, r.email, r.phone, r.locale, r.timezone,
         case when n.user_id is not null then n.id
              else (select c.id from public.notifications c
                    where c.parent_id = n.id and c.user_id = r.user_id) end,
         array(select m from unnest(n.delivery_method) m
               where coalesce((select p.enabled from public.notification_preferences p
                               where p.user_id = r.user_id and p.channel = m
                                 and p.type in (n.type, '*')
                               order by p.type = '*'
                               limit 1), true)),
         array(select m from unnest(array['email', 'sms']) m
               where exists (select 1 from public.notification_suppressions s
                             where s.channel = m
                               and s.address = case m when 'email' then lower(r.email) else r.phone end)),
         s.quiet_hours_start, s.quiet_hours_end, coalesce(s.timezone, 'UTC')
  from n
  cross join targeted r
  left join public.notification_settings s on s.user_id = r.user_id
  order by r.user_id
$$;

-- In-app delivery of a role-targeted notification: one copy per recipient whose preferences
-- allow in_app, in the same transaction, so it reaches them as their own postgres_changes.
create or replace function public.notifications_fan_out() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into public.notifications (parent_id, organization_id, user_id, type, title, message,
                                    priority, delivery_method, action_url, data, created_at)
  select new.id, new.organization_id, r.user_id, new.type, new.title, new.message,
         new.priority, new.delivery_method, new.action_url, new.data, new.created_at
  from public.notification_recipients_for(new.id) r
  where 'in_app' = any (r.channels)
  on conflict do nothing;
  return null;
end
$$;

create or replace trigger notifications_fan_out
  after insert on public.notifications
  for each row when (new.role_target is not null and 'in_app' = any (new.delivery_method))
  execute function public.notifications_fan_out();

-- Wake the delivery function: realtime.wake() fires at commit for this outbox row. Copies are
-- the in-app delivery of their original, so only originals are enqueued.
create or replace function public.notifications_enqueue() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into realtime.outbox (kind, payload)
  values ('notification', jsonb_build_object('notification_id', new.id));
  return null;
end
$$;

create or replace trigger notifications_enqueue
  after insert on public.notifications
  for each row when (new.parent_id is null)
  execute function public.notifications_enqueue();

-- Unread in-app notifications per user; security_invoker, so a user counts only their own.
create or replace view public.notification_unread_counts with (security_invoker = true) as
  select n.user_id, count(*)::integer as unread
  from public.notifications n
  where n.read_at is null and n.user_id is not null and 'in_app' = any (n.delivery_method)
  group by n.user_id;

-- Deletes read notifications created before now() - older_than, then originals of that age
-- that have no copy left and that no one can read in-app (role-targeted, or without in_app).
-- Returns how many rows were deleted; their delivery records go with them.
create or replace function public.notifications_cleanup(older_than interval default '90 days')
returns integer language plpgsql set search_path = '' as $$
declare
  cutoff constant timestamptz := now() - older_than;
  read_rows integer;
  orphans integer;
begin
  delete from public.notifications n
  where n.created_at < cutoff and n.read_at is not null;
  get diagnostics read_rows = row_count;
  delete from public.notifications n
  where n.created_at < cutoff and n.parent_id is null
    and (n.role_target is not null or not ('in_app' = any (n.delivery_method)))
    and not exists (select 1 from public.notifications c where c.parent_id = n.id);
  get diagnostics orphans = row_count;
  return read_rows + orphans;
end
$$;

-- Row-level security. service_role has BYPASSRLS; anon gets nothing.
alter table public.notifications enable row level security;
alter table public.notification_preferences enable row level security;
alter table public.notification_settings enable row level security;
alter table public.notification_deliveries enable row level security;
alter table public.notification_suppressions enable row level security;

-- A user's inbox: their own rows that are in-app messages. Users mark them read, seen or
-- archived (the only columns they may update) and delete them; they never insert.
drop policy if exists "notifications: read own" on public.notifications;
create policy "notifications: read own" on public.notifications for select to authenticated
  using (user_id = (select auth.uid()) and 'in_app' = any (delivery_method));
drop policy if exists "notifications: mark own read" on public.notifications;
create policy "notifications: mark own read" on public.notifications for update to authenticated
  using (user_id = (select auth.uid()) and 'in_app' = any (delivery_method))
  with check (user_id = (select auth.uid()));
drop policy if exists "notifications: delete own" on public.notifications;
create policy "notifications: delete own" on public.notifications for delete to authenticated
  using (user_id = (select auth.uid()) and 'in_app' = any (delivery_method));

drop policy if exists "notification_preferences: own" on public.notification_preferences;
create policy "notification_preferences: own" on public.notification_preferences for all
  to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

drop policy if exists "notification_settings: own" on public.notification_settings;
create policy "notification_settings: own" on public.notification_settings for all
  to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

drop policy if exists "notification_deliveries: read own" on public.notification_deliveries;
create policy "notification_deliveries: read own" on public.notification_deliveries for select
  to authenticated
  using (user_id = (select auth.uid()));

-- Explicit grants: revoking first also undoes default privileges a Supabase-style database
-- gives anon and authenticated on new tables.
revoke all on public.notifications, public.notification_preferences, public.notification_settings,
              public.notification_deliveries, public.notification_suppressions,
              public.notification_unread_counts
  from public, anon, authenticated;
grant select, delete on public.notifications to authenticated;
grant update (read_at, seen_at, archived_at) on public.notifications to authenticated;
grant select, insert, update, delete on public.notification_preferences, public.notification_settings
  to authenticated;
grant select on public.notification_deliveries, public.notification_unread_counts to authenticated;
grant all on public.notifications, public.notification_preferences, public.notification_settings,
             public.notification_deliveries, public.notification_suppressions,
             public.notification_unread_counts
  to service_role;

revoke all on function public.notification_recipients_for(uuid), public.notifications_cleanup(interval),
                       public.notifications_fan_out(), public.notifications_enqueue(),
                       public.notification_deliveries_touch()
  from public, anon, authenticated;
grant execute on function public.notification_recipients_for(uuid), public.notifications_cleanup(interval)
  to service_role;
revoke all on function public.is_valid_timezone(text) from public, anon;
grant execute on function public.is_valid_timezone(text) to authenticated, service_role;

-- In-app notifications reach subscribers as postgres_changes.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'notifications') then
    alter publication supabase_realtime add table public.notifications;
  end if;
end
$$;
