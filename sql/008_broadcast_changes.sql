-- Broadcast from Database: Supabase's realtime.broadcast_changes, with its signature and payload,
-- called from an AFTER row trigger:
--
--   create or replace function public.your_table_changes() returns trigger
--   security definer language plpgsql as $$
--   begin
--     perform realtime.broadcast_changes('topic:' || coalesce(NEW.id, OLD.id)::text,
--       TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
--     return null;
--   end $$;
--
-- Subscribers of the private channel `topic:<id>` (authorized by realtime.messages policies,
-- 005_private_channels.sql) receive the broadcast `event_name` with the payload
-- {id, schema, table, operation, record, old_record}: `record` is null on DELETE, `old_record`
-- on INSERT, `id` a fresh uuid. It goes through realtime.send, so through the outbox: it is sent
-- after commit and a rolled-back transaction sends nothing. Unlike Supabase, which warns and
-- continues, a message that cannot be sent (too large) fails the writing statement.

create or replace function realtime.broadcast_changes(
  topic_name text, event_name text, operation text, table_name text, table_schema text,
  new record, old record, level text default 'ROW')
returns void language plpgsql set search_path = '' as $$
declare
  row_data jsonb;
begin
  if level = 'STATEMENT' then
    raise exception 'function can only be triggered for each row, not for each statement';
  end if;
  if operation is null or operation not in ('INSERT', 'UPDATE', 'DELETE') then
    raise exception 'Unexpected operation type: %', operation;
  end if;
  row_data := jsonb_build_object('old_record', old, 'record', new, 'operation', operation,
                                 'table', table_name, 'schema', table_schema,
                                 'id', pg_catalog.gen_random_uuid());
  perform realtime.send(row_data, event_name, topic_name, true);
exception when others then
  raise exception 'Failed to process the row: %', sqlerrm using errcode = sqlstate;
end
$$;

-- Like realtime.send: only trusted code may broadcast. Call it from a SECURITY DEFINER trigger
-- function (as Supabase's example does), or as service_role.
revoke all on function realtime.broadcast_changes(text, text, text, text, text, record, record, text) from public;
grant execute on function realtime.broadcast_changes(text, text, text, text, text, record, record, text) to service_role;
