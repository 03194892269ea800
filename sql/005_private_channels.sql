-- Private channels (`config.private: true`), authorized by RLS policies on realtime.messages
-- the way Supabase documents them:
--
--   create policy "members read" on realtime.messages for select to authenticated
--     using (realtime.topic() = 'room-1' and extension in ('broadcast', 'presence'));
--   create policy "members write" on realtime.messages for insert to authenticated
--     with check (realtime.topic() = 'room-1' and extension = 'broadcast');
--
-- realtime.channel_access() evaluates them for one subscriber and topic at join: reading is
-- probed with rows that exist only inside the check, writing with an insert that is always
-- rolled back, so realtime.messages never keeps anything.

create table if not exists realtime.messages (
  id bigint generated always as identity primary key,
  topic text not null,
  extension text not null check (extension in ('broadcast', 'presence')),
  event text,
  payload jsonb,
  private boolean not null default true,
  inserted_at timestamptz not null default now()
);
alter table realtime.messages enable row level security;
grant select, insert on realtime.messages to anon, authenticated, service_role;

-- The channel being authorized (its name without "realtime:"), for policies to compare against.
create or replace function realtime.topic() returns text
language sql stable set search_path = '' as $$
  select nullif(current_setting('realtime.topic', true), '')
$$;
grant execute on function realtime.topic() to anon, authenticated, service_role;

create or replace function realtime.channel_access(role_name text, claims jsonb, channel text)
returns table (read_broadcast boolean, read_presence boolean,
               write_broadcast boolean, write_presence boolean)
language plpgsql set search_path = '' as $$
declare
  me text := current_user;
  probe_broadcast bigint;
  probe_presence bigint;
begin
  read_broadcast := false; read_presence := false;
  write_broadcast := false; write_presence := false;
  begin
    insert into realtime.messages (topic, extension, private) values (channel, 'broadcast', true)
      returning id into probe_broadcast;
    insert into realtime.messages (topic, extension, private) values (channel, 'presence', true)
      returning id into probe_presence;
    perform pg_catalog.set_config('realtime.topic', channel, true);
    perform pg_catalog.set_config('request.jwt.claims', coalesce(claims, '{}')::text, true);
    perform pg_catalog.set_config('request.jwt.claim.sub', coalesce(claims ->> 'sub', ''), true);
    perform pg_catalog.set_config('request.jwt.claim.role', role_name, true);
    perform pg_catalog.set_config('role', role_name, true);
    read_broadcast := exists (select 1 from realtime.messages m where m.id = probe_broadcast);
    read_presence := exists (select 1 from realtime.messages m where m.id = probe_presence);
    begin
      insert into realtime.messages (topic, extension, private) values (channel, 'broadcast', true);
      write_broadcast := true;
    exception when insufficient_privilege then
      write_broadcast := false;
    end;
    begin
      insert into realtime.messages (topic, extension, private) values (channel, 'presence', true);
      write_presence := true;
    exception when insufficient_privilege then
      write_presence := false;
    end;
    -- Undo every probe: nothing of the check stays in realtime.messages.
    raise exception using errcode = 'P0001', message = 'realtime.channel_access rollback';
  exception when raise_exception then
    perform pg_catalog.set_config('role', me, true);
  end;
  perform pg_catalog.set_config('request.jwt.claims', '', true);
  perform pg_catalog.set_config('realtime.topic', '', true);
  return next;
end
$$;
