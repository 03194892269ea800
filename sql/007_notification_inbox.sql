-- The inbox a user expects: seen, read and archived states with their times, and badge counts
-- kept per user and pushed live.
--
-- public.notification_badges holds, per user, how many in-app notifications (not archived)
-- are unseen and unread. Statement-level triggers on public.notifications refresh the rows of
-- the users a statement touched, changing a row only when a count changes; the table is in
-- the supabase_realtime publication, so a client subscribed to
--   postgres_changes {event: '*', schema: 'public', table: 'notification_badges',
--                     filter: 'user_id=eq.<me>'}
-- receives {user_id, unseen, unread, updated_at} whenever its counts change (RLS: own row).

-- The states themselves (seen_at, archived_at beside read_at) are columns of
-- public.notifications, created with it in 006.
create index if not exists notifications_user_inbox_idx
  on public.notifications (user_id) where archived_at is null;

create table if not exists public.notification_badges (
  user_id uuid primary key,
  unseen integer not null default 0,
  unread integer not null default 0,
  updated_at timestamptz not null default now()
);

create or replace function public.notification_badges_refresh(users uuid[]) returns void
language sql security definer set search_path = '' as $$
  insert into public.notification_badges as b (user_id, unseen, unread, updated_at)
  select u.id, count(n.id) filter (where n.seen_at is null),
         count(n.id) filter (where n.read_at is null), now()
  from unnest(users) as u(id)
  left join public.notifications n
    on n.user_id = u.id and n.archived_at is null and 'in_app' = any (n.delivery_method)
  group by u.id
  on conflict (user_id) do update
    set unseen = excluded.unseen, unread = excluded.unread, updated_at = excluded.updated_at
    where (b.unseen, b.unread) is distinct from (excluded.unseen, excluded.unread)
$$;

create or replace function public.notification_badges_track() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  users uuid[];
begin
  if tg_op = 'INSERT' then
    select array_agg(distinct r.user_id) into users from new_rows r where r.user_id is not null;
  elsif tg_op = 'DELETE' then
    select array_agg(distinct r.user_id) into users from old_rows r where r.user_id is not null;
  else
    select array_agg(distinct r.user_id) into users
    from (select user_id from new_rows union select user_id from old_rows) r
    where r.user_id is not null;
  end if;
  if users is not null then
    perform public.notification_badges_refresh(users);
  end if;
  return null;
end
$$;

-- Transition tables need one trigger per event (and no column list).
create or replace trigger notification_badges_insert
  after insert on public.notifications referencing new table as new_rows
  for each statement execute function public.notification_badges_track();
create or replace trigger notification_badges_update
  after update on public.notifications referencing old table as old_rows new table as new_rows
  for each statement execute function public.notification_badges_track();
create or replace trigger notification_badges_delete
  after delete on public.notifications referencing old table as old_rows
  for each statement execute function public.notification_badges_track();

alter table public.notification_badges enable row level security;
drop policy if exists "notification_badges: read own" on public.notification_badges;
create policy "notification_badges: read own" on public.notification_badges for select
  to authenticated using (user_id = (select auth.uid()));

revoke all on public.notification_badges from public, anon, authenticated;
grant select on public.notification_badges to authenticated;
grant all on public.notification_badges to service_role;
revoke all on function public.notification_badges_refresh(uuid[]),
                       public.notification_badges_track()
  from public, anon, authenticated;
grant execute on function public.notification_badges_refresh(uuid[]) to service_role;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'notification_badges') then
    alter publication supabase_realtime add table public.notification_badges;
  end if;
end
$$;
