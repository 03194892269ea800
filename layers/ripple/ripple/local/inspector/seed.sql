-- The demo's data: two schools, their staff (profiles), students and groups. Applied by
-- `make demo` after sql/examples/school_crm.sql; re-runnable (fixed ids, on conflict do nothing).

create table if not exists public.organizations (
  id uuid primary key,
  name text not null
);
alter table public.organizations enable row level security;
drop policy if exists "organizations: members read" on public.organizations;
create policy "organizations: members read" on public.organizations for select to authenticated
  using (id = (select public.school_organization()));
revoke all on public.organizations from public, anon, authenticated;
grant select on public.organizations to authenticated;
grant all on public.organizations to service_role;

insert into public.organizations (id, name) values
  ('0a000000-0000-4000-8000-00000000000a', 'Northside Music School'),
  ('0b000000-0000-4000-8000-00000000000b', 'Lakeside Academy')
on conflict (id) do nothing;

insert into public.profiles (id, organization_id, role, full_name, email) values
  ('1a000000-0000-4000-8000-000000000001', '0a000000-0000-4000-8000-00000000000a', 'admin',
   'Ada Admin', 'ada@northside.test'),
  ('1a000000-0000-4000-8000-000000000002', '0a000000-0000-4000-8000-00000000000a', 'teacher',
   'Tomás Teacher', 'tomas@northside.test'),
  ('1b000000-0000-4000-8000-000000000001', '0b000000-0000-4000-8000-00000000000b', 'admin',
   'Bea Admin', 'bea@lakeside.test')
on conflict (id) do nothing;

insert into public.students (id, organization_id, full_name, email, payment_status) values
  ('2a000000-0000-4000-8000-000000000001', '0a000000-0000-4000-8000-00000000000a', 'Mia Jones', 'mia@example.test', 'ok'),
  ('2a000000-0000-4000-8000-000000000002', '0a000000-0000-4000-8000-00000000000a', 'Leo Park', 'leo@example.test', 'pending'),
  ('2a000000-0000-4000-8000-000000000003', '0a000000-0000-4000-8000-00000000000a', 'Sara Diaz', null, 'ok'),
  ('2b000000-0000-4000-8000-000000000001', '0b000000-0000-4000-8000-00000000000b', 'Noah Kim', 'noah@example.test', 'ok')
on conflict (id) do nothing;

insert into public.groups (id, organization_id, name, capacity) values
  ('3a000000-0000-4000-8000-000000000001', '0a000000-0000-4000-8000-00000000000a', 'Piano beginners', 4),
  ('3a000000-0000-4000-8000-000000000002', '0a000000-0000-4000-8000-00000000000a', 'Violin', 2),
  ('3b000000-0000-4000-8000-000000000001', '0b000000-0000-4000-8000-00000000000b', 'Choir', 12)
on conflict (id) do nothing;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'organizations') then
    alter publication supabase_realtime add table public.organizations;
  end if;
end
$$;
