-- Example: a school CRM whose business rules create notifications.
--
-- Not applied by Ripple; apply it yourself after the migrations (it is re-runnable):
--   psql postgresql://postgres:postgres@127.0.0.1:54322/postgres -f sql/examples/school_crm.sql
--
-- Staff and students sign in as users with a row in public.profiles (role 'admin', 'teacher'
-- or 'student'). Three rules, each a trigger:
--   a new enrollment            → 'enrollment.created' to the organization's admins (in_app, email)
--   a student's payment_status
--     turning 'overdue'         → 'payment.overdue', high priority, to the student's own user
--                                 (in_app, email, sms); to the admins if the student has none
--   a group reaching capacity   → 'group.full' to the organization's admins (in_app)

create table if not exists public.students (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null,
  user_id uuid,
  full_name text not null,
  email text,
  phone text,
  payment_status text not null default 'ok' check (payment_status in ('ok', 'pending', 'overdue')),
  created_at timestamptz not null default now()
);
create index if not exists students_organization_idx on public.students (organization_id);

create table if not exists public.teachers (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null,
  user_id uuid,
  full_name text not null,
  email text,
  phone text,
  created_at timestamptz not null default now()
);
create index if not exists teachers_organization_idx on public.teachers (organization_id);

create table if not exists public.groups (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null,
  name text not null,
  capacity integer not null check (capacity > 0),
  created_at timestamptz not null default now()
);
create index if not exists groups_organization_idx on public.groups (organization_id);

create table if not exists public.student_group_enrollments (
  student_id uuid not null references public.students (id) on delete cascade,
  group_id uuid not null references public.groups (id) on delete cascade,
  enrolled_at timestamptz not null default now(),
  primary key (student_id, group_id)
);
create index if not exists student_group_enrollments_group_idx
  on public.student_group_enrollments (group_id);

create table if not exists public.teacher_group_assignments (
  teacher_id uuid not null references public.teachers (id) on delete cascade,
  group_id uuid not null references public.groups (id) on delete cascade,
  assigned_at timestamptz not null default now(),
  primary key (teacher_id, group_id)
);
create index if not exists teacher_group_assignments_group_idx
  on public.teacher_group_assignments (group_id);

-- A new enrollment: one notification for the organization's admins.
create or replace function public.school_enrollment_notify() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into public.notifications (organization_id, role_target, type, title, message, priority,
                                    delivery_method, action_url, data)
  select g.organization_id, array['admin'], 'enrollment.created', 'New enrollment',
         format('%s enrolled in %s', s.full_name, g.name), 'normal', array['in_app', 'email'],
         format('/groups/%s', g.id),
         jsonb_build_object('student_id', s.id, 'group_id', g.id,
                            'student_name', s.full_name, 'group_name', g.name)
  from public.students s, public.groups g
  where s.id = new.student_id and g.id = new.group_id;
  return null;
end
$$;

create or replace trigger school_enrollment_notify
  after insert on public.student_group_enrollments
  for each row execute function public.school_enrollment_notify();

-- A group reaching capacity: once, when an insert statement takes its enrollment count from
-- below capacity to capacity or more (statement-level, so a multi-row insert notifies once).
create or replace function public.school_group_full_notify() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  -- Concurrent enrollments into one group queue here, so each counts the others' rows.
  perform 1 from public.groups g
  where g.id in (select a.group_id from added a) order by g.id for update;
  insert into public.notifications (organization_id, role_target, type, title, message, priority,
                                    delivery_method, action_url, data)
  select g.organization_id, array['admin'], 'group.full', 'Group full',
         format('%s has reached its capacity of %s', g.name, g.capacity), 'normal',
         array['in_app'], format('/groups/%s', g.id),
         jsonb_build_object('group_id', g.id, 'group_name', g.name, 'capacity', g.capacity)
  from (select a.group_id, count(*) as added from added a group by a.group_id) a
  join public.groups g on g.id = a.group_id
  cross join lateral (select count(*) as enrolled from public.student_group_enrollments e
                      where e.group_id = g.id) c
  where c.enrolled >= g.capacity and c.enrolled - a.added < g.capacity;
  return null;
end
$$;

create or replace trigger school_group_full_notify
  after insert on public.student_group_enrollments
  referencing new table as added
  for each statement execute function public.school_group_full_notify();

-- A payment turning overdue: the student hears about it, or the admins when the student has
-- no user to sign in as.
create or replace function public.school_payment_overdue_notify() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into public.notifications (organization_id, user_id, role_target, type, title, message,
                                    priority, delivery_method, action_url, data)
  values (new.organization_id, new.user_id,
          case when new.user_id is null then array['admin'] end,
          'payment.overdue', 'Payment overdue',
          case when new.user_id is null then format('%s has an overdue payment', new.full_name)
               else 'Your payment is overdue. Please settle it to keep your place.' end,
          'high', array['in_app', 'email', 'sms'], format('/students/%s/payments', new.id),
          jsonb_build_object('student_id', new.id, 'student_name', new.full_name));
  return null;
end
$$;

create or replace trigger school_payment_overdue_notify
  after update of payment_status on public.students
  for each row
  when (new.payment_status = 'overdue' and old.payment_status is distinct from 'overdue')
  execute function public.school_payment_overdue_notify();

revoke all on function public.school_enrollment_notify(), public.school_group_full_notify(),
                       public.school_payment_overdue_notify()
  from public, anon, authenticated;

-- Reading: members of an organization (a profile in it) read its rows; writes go through the
-- app's backend as service_role.
create or replace function public.school_organization() returns uuid
language sql stable security definer set search_path = '' as $$
  select p.organization_id from public.profiles p
  where p.id = (select auth.uid()) and p.deleted_at is null
$$;
revoke all on function public.school_organization() from public, anon;
grant execute on function public.school_organization() to authenticated, service_role;

alter table public.students enable row level security;
alter table public.teachers enable row level security;
alter table public.groups enable row level security;
alter table public.student_group_enrollments enable row level security;
alter table public.teacher_group_assignments enable row level security;

drop policy if exists "students: organization reads" on public.students;
create policy "students: organization reads" on public.students for select to authenticated
  using (organization_id = (select public.school_organization()));
drop policy if exists "teachers: organization reads" on public.teachers;
create policy "teachers: organization reads" on public.teachers for select to authenticated
  using (organization_id = (select public.school_organization()));
drop policy if exists "groups: organization reads" on public.groups;
create policy "groups: organization reads" on public.groups for select to authenticated
  using (organization_id = (select public.school_organization()));
drop policy if exists "student_group_enrollments: organization reads"
  on public.student_group_enrollments;
create policy "student_group_enrollments: organization reads" on public.student_group_enrollments
  for select to authenticated
  using (exists (select 1 from public.groups g
                 where g.id = student_group_enrollments.group_id
                   and g.organization_id = (select public.school_organization())));
drop policy if exists "teacher_group_assignments: organization reads"
  on public.teacher_group_assignments;
create policy "teacher_group_assignments: organization reads" on public.teacher_group_assignments
  for select to authenticated
  using (exists (select 1 from public.groups g
                 where g.id = teacher_group_assignments.group_id
                   and g.organization_id = (select public.school_organization())));

revoke all on public.students, public.teachers, public.groups, public.student_group_enrollments,
              public.teacher_group_assignments
  from public, anon, authenticated;
grant select on public.students, public.teachers, public.groups, public.student_group_enrollments,
                public.teacher_group_assignments
  to authenticated;
grant all on public.students, public.teachers, public.groups, public.student_group_enrollments,
             public.teacher_group_assignments
  to service_role;

-- Realtime: the CRM's tables and the notifications as postgres_changes.
do $$
declare
  t text;
begin
  foreach t in array array['students', 'teachers', 'groups', 'student_group_enrollments',
                           'teacher_group_assignments', 'notifications'] loop
    if not exists (select 1 from pg_catalog.pg_publication_tables
                   where pubname = 'supabase_realtime' and schemaname = 'public'
                     and tablename = t) then
      execute format('alter publication supabase_realtime add table public.%I', t);
    end if;
  end loop;
end
$$;
