-- Broadcast from SQL, delivered after commit through the outbox (a rolled-back transaction
-- sends nothing). `topic` is the channel name clients pass to supabase.channel(...), without
-- the "realtime:" prefix, as in Supabase.
create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language plpgsql security definer set search_path = '' as $$
begin
  if topic is null or topic = '' or event is null or event = '' then
    raise exception 'realtime.send needs a topic and an event' using errcode = '22023';
  end if;
  -- API Gateway delivers at most 128 KB per message: refuse what could never arrive, so the
  -- caller's transaction fails now instead of the message vanishing after commit.
  if octet_length(coalesce(payload::text, '')) + octet_length(event) + octet_length(topic) > 126 * 1024 then
    raise exception 'payload_size_exceeded: realtime.send payload is % bytes; at most about 126 KB fits in a message',
      octet_length(coalesce(payload::text, '')) using errcode = '54000';
  end if;
  -- The transaction has its xid before the row draws its outbox id (013_outbox_log.sql relies
  -- on it to know when no lower id can still appear).
  perform pg_current_xact_id();
  insert into realtime.outbox (kind, payload)
  values ('broadcast', jsonb_build_object('topic', topic, 'event', event, 'payload', payload,
                                         'private', coalesce(private, true)));
end
$$;

-- Sending reaches every subscriber of a topic: only trusted code may call it. Call it from a
-- SECURITY DEFINER trigger function, or as service_role.
revoke all on function realtime.send(jsonb, text, text, boolean) from public;
grant execute on function realtime.send(jsonb, text, text, boolean) to service_role;
