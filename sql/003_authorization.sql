-- Per-subscriber authorization of captured changes, evaluated in one round trip per batch.
--
-- realtime.authorize(request) takes the distinct principals (role + JWT claims) of a batch's
-- candidate subscribers and the row images they would receive, and answers for each
-- (principal, image) pair whether that principal may SELECT the row *as it was changed* and
-- which columns it may not see. The table's SELECT policies (pg_policy) are evaluated over the
-- captured image, as the principal's role, with request.jwt.claims set — so Supabase policies
-- using auth.uid(), auth.jwt() and auth.role() work unchanged, later writes cannot change the
-- answer, and DELETEs are checked against the row as it was before the delete.

-- The role Ripple connects as must be able to act as each API role.
do $$
begin
  execute format('grant anon, authenticated, service_role to %I', current_user);
exception when others then
  raise warning 'realtime: could not grant the API roles to %: %', current_user, sqlerrm;
end
$$;

-- The SELECT predicate the table's policies impose on `role_name`, as SQL over an alias named
-- after the table; 'true' when RLS does not apply to the role, 'false' when nothing permits.
create or replace function realtime.select_predicate(rel regclass, role_name text)
returns text language plpgsql stable set search_path = '' as $$
declare
  role_oid oid := (select oid from pg_catalog.pg_roles where rolname = role_name);
  cls record;
  permissive text;
  restrictive text;
begin
  select c.relrowsecurity, c.relforcerowsecurity, c.relowner into cls
  from pg_catalog.pg_class c where c.oid = rel;
  if not cls.relrowsecurity then
    return 'true';
  end if;
  if (select r.rolbypassrls or r.rolsuper from pg_catalog.pg_roles r where r.oid = role_oid) then
    return 'true';
  end if;
  if cls.relowner = role_oid and not cls.relforcerowsecurity then
    return 'true';
  end if;
  select string_agg('(' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || ')', ' or ')
    filter (where p.polpermissive),
         string_agg('(' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || ')', ' and ')
    filter (where not p.polpermissive)
    into permissive, restrictive
  from pg_catalog.pg_policy p
  where p.polrelid = rel
    and p.polcmd in ('r', '*')
    and (p.polroles = '{0}' or role_oid = any (p.polroles)
         or exists (select 1 from unnest(p.polroles) g(r) where pg_catalog.pg_has_role(role_oid, g.r, 'member')));
  if permissive is null then
    return 'false';
  end if;
  return '(' || permissive || ')' || coalesce(' and (' || restrictive || ')', '');
end
$$;

-- What one role may read of one table: `verdict` is 'allow' or 'deny' when no row needs
-- checking (no RLS for the role, no SELECT at all, no policy that permits), 'check' when each
-- row image goes through `predicate`; `hidden` lists the columns it may not see. The same for
-- every principal of that role, so computed once per batch.
create or replace function realtime.table_facts(role_name text, rel_schema text, rel_name text)
returns jsonb language plpgsql stable set search_path = '' as $$
declare
  rel regclass := pg_catalog.to_regclass(pg_catalog.quote_ident(rel_schema) || '.' ||
                                         pg_catalog.quote_ident(rel_name));
  predicate text;
begin
  if role_name is null or rel is null
     or not pg_catalog.has_any_column_privilege(role_name, rel, 'SELECT') then
    return jsonb_build_object('verdict', 'deny');
  end if;
  predicate := realtime.select_predicate(rel, role_name);
  return jsonb_build_object(
    'verdict', case predicate when 'true' then 'allow' when 'false' then 'deny' else 'check' end,
    'rel', rel::oid::text, 'alias', rel_name, 'predicate', predicate,
    'hidden', (select jsonb_agg(a.attname::text order by a.attnum)
               from pg_catalog.pg_attribute a
               where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
                 and not pg_catalog.has_column_privilege(role_name, rel, a.attnum, 'SELECT')));
end
$$;

-- Whether a row image passes the policy predicate of `facts` (verdict 'check'), evaluated as
-- `role_name` with the principal's request.jwt.claims already set. Raises whatever the policy
-- raises. No SET clause: it runs once per check, and the predicate is schema-qualified.
create or replace function realtime.row_visible(role_name text, facts jsonb, row_image jsonb)
returns boolean language plpgsql as $$
declare
  me text := current_user;
  ok boolean;
begin
  perform pg_catalog.set_config('role', role_name, true);
  execute format('select exists (select 1 from pg_catalog.jsonb_populate_record(null::%s, $1) as %I where %s)',
                 (facts ->> 'rel')::oid::regclass, facts ->> 'alias', facts ->> 'predicate')
    into ok using row_image;
  perform pg_catalog.set_config('role', me, true);
  return coalesce(ok, false);
end
$$;

-- The result gained `error` and `reason`: an older definition is replaced, not overloaded.
do $$
begin
  if exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
             where n.nspname = 'realtime' and p.proname = 'authorize'
               and not ('reason' = any (coalesce(p.proargnames, '{}')))) then
    drop function realtime.authorize(jsonb);
  end if;
end
$$;

-- request: {"principals": [{"role": text, "claims": {...}}, ...],
--           "images": [{"schema": text, "table": text, "row": {...}}, ...],
--           "checks": [[principal index, image index], ...]}
-- One result row per check. A check that cannot be evaluated is denied (fail closed).
-- Checks are grouped by principal: its claims are set once, the role-and-table facts are
-- computed once per batch, and each principal's checks run in one subtransaction. A policy that
-- raises (a bad cast of a claim, a division by zero, a missing function) fails that principal
-- only: its checks are then run one by one, and those that raise are denied with `error` (the
-- SQLSTATE) and `reason` (the message) set; every other principal's answers stand.
create or replace function realtime.authorize(request jsonb)
returns table (principal integer, image integer, allowed boolean, hidden text[], error text, reason text)
language plpgsql set search_path = '' as $$
declare
  principals jsonb[] := array(select e from jsonb_array_elements(request -> 'principals') e);
  images jsonb[] := array(select e from jsonb_array_elements(request -> 'images') e);
  run record;
  role_name text;
  img jsonb;
  key text;
  -- role-and-table facts, by "role/schema.table"; `facts` and `verdict` are those of `facts_key`
  cache jsonb := '{}';
  facts_key text;
  facts jsonb;
  verdict text;
  shown_key text;
  shown text[];
  n integer;
  k integer;
  keys text[];
  oks boolean[];
  codes text[];
  messages text[];
begin
  for run in
    select (c.value ->> 0)::int as p, array_agg((c.value ->> 1)::int order by (c.value ->> 1)::int) as imgs
    from jsonb_array_elements(request -> 'checks') c
    group by 1
    order by 1
  loop
    role_name := principals[run.p + 1] ->> 'role';
    perform pg_catalog.set_config('request.jwt.claims', coalesce(principals[run.p + 1] -> 'claims', '{}')::text, true);
    perform pg_catalog.set_config('request.jwt.claim.sub', coalesce(principals[run.p + 1] -> 'claims' ->> 'sub', ''), true);
    perform pg_catalog.set_config('request.jwt.claim.role', coalesce(role_name, ''), true);
    n := cardinality(run.imgs);
    keys := array_fill(null::text, array[n]);
    oks := array_fill(false, array[n]);
    codes := array_fill(null::text, array[n]);
    messages := array_fill(null::text, array[n]);
    begin
      for k in 1 .. n loop
        img := images[run.imgs[k] + 1];
        key := role_name || '/' || (img ->> 'schema') || '.' || (img ->> 'table');
        if key is distinct from facts_key then
          facts_key := null;
          facts := coalesce(cache -> key, realtime.table_facts(role_name, img ->> 'schema', img ->> 'table'));
          cache := cache || jsonb_build_object(key, facts);
          verdict := facts ->> 'verdict';
          facts_key := key;
        end if;
        keys[k] := key;
        oks[k] := case verdict when 'allow' then true
                               when 'check' then realtime.row_visible(role_name, facts, img -> 'row')
                               else false end;
      end loop;
    exception when others then
      -- Only this principal's subtransaction is undone: each of its checks is run again alone,
      -- so the ones that raise are marked and the others keep their answer.
      for k in 1 .. n loop
        begin
          oks[k] := false;
          img := images[run.imgs[k] + 1];
          key := role_name || '/' || (img ->> 'schema') || '.' || (img ->> 'table');
          if key is distinct from facts_key then
            facts_key := null;
            facts := coalesce(cache -> key, realtime.table_facts(role_name, img ->> 'schema', img ->> 'table'));
            cache := cache || jsonb_build_object(key, facts);
            verdict := facts ->> 'verdict';
            facts_key := key;
          end if;
          keys[k] := key;
          oks[k] := case verdict when 'allow' then true
                                 when 'check' then realtime.row_visible(role_name, facts, img -> 'row')
                                 else false end;
        exception when others then
          oks[k] := false;
          codes[k] := sqlstate;
          messages[k] := sqlerrm;
        end;
      end loop;
    end;
    for k in 1 .. n loop
      principal := run.p;
      image := run.imgs[k];
      allowed := coalesce(oks[k], false);
      error := codes[k];
      reason := messages[k];
      if allowed and keys[k] is distinct from shown_key then
        shown := case when jsonb_typeof(cache -> keys[k] -> 'hidden') = 'array'
                      then array(select jsonb_array_elements_text(cache -> keys[k] -> 'hidden')) end;
        shown_key := keys[k];
      end if;
      hidden := case when allowed then shown end;
      return next;
    end loop;
  end loop;
  perform pg_catalog.set_config('request.jwt.claims', '', true);
end
$$;
