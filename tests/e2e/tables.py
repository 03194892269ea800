"""Tables a test publishes for realtime, the way an app does."""
from __future__ import annotations


def published(db, table: str, columns: str, *, grant: str = "anon") -> None:
    """Create public.<table> (an identity `id` plus `columns`), grant SELECT to `grant` and add it
    to the supabase_realtime publication; each step only if not done already."""
    db.execute(f"create table if not exists public.{table} (id bigint generated always as identity "
               f"primary key, {columns})")
    db.execute(f"grant select on public.{table} to {grant}")
    db.execute(f"""do $$ begin if not exists (select 1 from pg_publication_tables where tablename = '{table}')
                   then alter publication supabase_realtime add table public.{table}; end if; end $$""")
