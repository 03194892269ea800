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
create or replace function realtime.authorize(request jsonb)
returns table (principal integer, image integer, allowed boolean, hidden text[])
language plpgsql set search_path = '' as $$
declare
  me text := current_user;
  pr record;
  chk record;
  img jsonb;
  rel regclass;
  pred text;
  ok boolean;
  cache jsonb := '{}';
  key text;
begin
  for pr in
    select (e.ordinality - 1)::int as idx, e.value as v
    from jsonb_array_elements(request -> 'principals') with ordinality e
  loop
    for chk in
      select (c.value ->> 1)::int as img_idx
      from jsonb_array_elements(request -> 'checks') c
      where (c.value ->> 0)::int = pr.idx
    loop
      img := request -> 'images' -> chk.img_idx;
      principal := pr.idx;
      image := chk.img_idx;
      allowed := false;
      hidden := null;
      begin
        rel := pg_catalog.to_regclass(pg_catalog.quote_ident(img ->> 'schema') || '.' ||
                                      pg_catalog.quote_ident(img ->> 'table'));
        if rel is null or not pg_catalog.has_any_column_privilege(pr.v ->> 'role', rel, 'SELECT') then
          return next;
          continue;
        end if;
        key := (pr.v ->> 'role') || '/' || rel::oid::text;
        pred := cache ->> key;
        if pred is null then
          pred := realtime.select_predicate(rel, pr.v ->> 'role');
          cache := cache || jsonb_build_object(key, pred);
        end if;
        if pred = 'true' then
          ok := true;
        elsif pred = 'false' then
          ok := false;
        else
          perform pg_catalog.set_config('request.jwt.claims', coalesce(pr.v -> 'claims', '{}')::text, true);
          perform pg_catalog.set_config('request.jwt.claim.sub', coalesce(pr.v -> 'claims' ->> 'sub', ''), true);
          perform pg_catalog.set_config('request.jwt.claim.role', pr.v ->> 'role', true);
          perform pg_catalog.set_config('role', pr.v ->> 'role', true);
          execute format('select exists (select 1 from pg_catalog.jsonb_populate_record(null::%s, $1) as %I where %s)',
                         rel, img ->> 'table', pred)
            into ok using img -> 'row';
          perform pg_catalog.set_config('role', me, true);
        end if;
        allowed := coalesce(ok, false);
        if allowed then
          select array_agg(a.attname::text order by a.attnum) into hidden
          from pg_catalog.pg_attribute a
          where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
            and not pg_catalog.has_column_privilege(pr.v ->> 'role', rel, a.attnum, 'SELECT');
        end if;
      exception when others then
        perform pg_catalog.set_config('role', me, true);
        allowed := false;
        hidden := null;
      end;
      return next;
    end loop;
  end loop;
  perform pg_catalog.set_config('request.jwt.claims', '', true);
end
$$;
