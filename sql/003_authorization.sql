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

-- request: {"principals": [{"role": text, "claims": {...}}, ...],
--           "images": [{"schema": text, "table": text, "row": {...}}, ...],
--           "checks": [[principal index, image index], ...]}
-- One result row per check. A check that cannot be evaluated is denied (fail closed).
-- One pass over the checks, grouped by principal: a principal's claims are set once, and the
-- role-and-table facts (privilege, predicate, hidden columns) are computed once per batch.
create or replace function realtime.authorize(request jsonb)
returns table (principal integer, image integer, allowed boolean, hidden text[])
language plpgsql set search_path = '' as $$
declare
  me text := current_user;
  principals jsonb[] := array(select e from jsonb_array_elements(request -> 'principals') e);
  images jsonb[] := array(select e from jsonb_array_elements(request -> 'images') e);
  chk record;
  current_principal integer := -1;
  role_name text;
  img jsonb;
  rel regclass;
  key text;
  facts jsonb;
  cache jsonb := '{}';
  ok boolean;
begin
  for chk in
    select (c.value ->> 0)::int as p, (c.value ->> 1)::int as i
    from jsonb_array_elements(request -> 'checks') c
    order by 1, 2
  loop
    principal := chk.p;
    image := chk.i;
    allowed := false;
    hidden := null;
    if chk.p <> current_principal then
      current_principal := chk.p;
      role_name := principals[chk.p + 1] ->> 'role';
      perform pg_catalog.set_config('request.jwt.claims', coalesce(principals[chk.p + 1] -> 'claims', '{}')::text, true);
      perform pg_catalog.set_config('request.jwt.claim.sub', coalesce(principals[chk.p + 1] -> 'claims' ->> 'sub', ''), true);
      perform pg_catalog.set_config('request.jwt.claim.role', role_name, true);
    end if;
    img := images[chk.i + 1];
    begin
      key := role_name || '/' || (img ->> 'schema') || '.' || (img ->> 'table');
      facts := cache -> key;
      if facts is null then
        rel := pg_catalog.to_regclass(pg_catalog.quote_ident(img ->> 'schema') || '.' ||
                                      pg_catalog.quote_ident(img ->> 'table'));
        if rel is null or not pg_catalog.has_any_column_privilege(role_name, rel, 'SELECT') then
          facts := jsonb_build_object('readable', false);
        else
          facts := jsonb_build_object(
            'readable', true, 'rel', rel::oid::text,
            'predicate', realtime.select_predicate(rel, role_name),
            'hidden', (select jsonb_agg(a.attname::text order by a.attnum)
                       from pg_catalog.pg_attribute a
                       where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
                         and not pg_catalog.has_column_privilege(role_name, rel, a.attnum, 'SELECT')));
        end if;
        cache := cache || jsonb_build_object(key, facts);
      end if;
      if (facts ->> 'readable')::boolean then
        if facts ->> 'predicate' = 'true' then
          ok := true;
        elsif facts ->> 'predicate' = 'false' then
          ok := false;
        else
          perform pg_catalog.set_config('role', role_name, true);
          execute format('select exists (select 1 from pg_catalog.jsonb_populate_record(null::%s, $1) as %I where %s)',
                         (facts ->> 'rel')::oid::regclass, img ->> 'table', facts ->> 'predicate')
            into ok using img -> 'row';
          perform pg_catalog.set_config('role', me, true);
        end if;
        allowed := coalesce(ok, false);
        if allowed and jsonb_typeof(facts -> 'hidden') = 'array' then
          hidden := array(select jsonb_array_elements_text(facts -> 'hidden'));
        end if;
      end if;
    exception when others then
      perform pg_catalog.set_config('role', me, true);
      allowed := false;
      hidden := null;
    end;
    return next;
  end loop;
  perform pg_catalog.set_config('request.jwt.claims', '', true);
end
$$;
