-- `unconfirmed`: an email or SMS whose request may have reached SES/SNS while the answer was lost
-- (read timeout, connection closed after sending). It is never sent again; SES feedback for the
-- email settles it (delivered, bounced, complained).
--
-- Re-runnable, and it keeps every status another migration allowed: the status check is
-- rebuilt from the values it already lists, plus 'unconfirmed', only when that one is missing.
do $$
declare
  allowed text[];
begin
  select array_agg(distinct v[1] order by v[1]) into allowed
  from pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''', 'g') v
  where c.conrelid = 'public.notification_deliveries'::regclass
    and c.conname = 'notification_deliveries_status_check';
  if allowed is null then
    allowed := array['queued', 'sent', 'delivered', 'bounced', 'complained', 'failed',
                     'skipped', 'suppressed', 'deferred'];
  elsif 'unconfirmed' = any (allowed) then
    return;
  end if;
  alter table public.notification_deliveries drop constraint if exists notification_deliveries_status_check;
  -- An `in` list, which Postgres keeps as ARRAY['queued'::text, ...]: the form read above.
  execute format('alter table public.notification_deliveries add constraint '
                 'notification_deliveries_status_check check (status in (%s))',
                 (select string_agg(quote_literal(s), ', ') from unnest(allowed || 'unconfirmed'::text) s));
end
$$;
