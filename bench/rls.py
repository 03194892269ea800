"""RLS benchmark: postgres_changes to many distinct users of one table, with and without RLS.

For each subscriber count N the script opens N raw WebSocket connections, each a different
user: its own HS256 JWT (role `authenticated`, its own `sub`, an `organization_id` claim; users
spread round-robin over `--organizations` organizations), sent as the join's `access_token` the
way supabase-js sends the signed-in user's token. Each user joins one channel with an INSERT
binding on each of two tables that are identical but for RLS:

- `rls`: public.bench_docs with row level security and the policy
  `organization_id = (auth.jwt()->>'organization_id')::int`, so each change is authorized for
  the ~N/K subscribers of its organization;
- `open`: public.bench_docs_open without RLS (a plain GRANT), so every subscriber is authorized.

Then `--changes` rows are committed to one table and collected, then to the other, so both are
measured with the same users and connections. Row j belongs to organization `j mod K + 1`.

It measures authorized deliveries received against expected (expected from the organization
spread of the subscribers that joined), deliveries that reached a user of another organization
(violations, must be 0), latency from `commit` returning to the frame arriving (p50/p95/p99),
deliveries per second, and per drained batch: the fanout's Postgres statements
(`Stats.pg_round_trips / Stats.batches`, from what each fanout run returned), its DynamoDB
requests, the distinct principals and (principal, row image) checks in the batched
`realtime.authorize` request, and the time that statement took. The last two come from a wrapper
around the fanout's `db.execute` in this process (the stack runs in-process).

Everything runs on one machine, as for bench/fanout.py; the request and statement counts carry
over to AWS, the times are those of the local stack.

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/rls.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/rls.py --subscribers 10,100 --changes 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass, field

from fanout import Counters, Subscribers, wait_until_idle
from harness import (
    Clients,
    WakeLog,
    add_round_options,
    configure,
    latency_cells,
    local_stack,
    print_header,
    wait_for_cleanup,
    watch_fanout,
)

TABLES = {"rls": "bench_docs", "open": "bench_docs_open"}
POLICY = "organization_id = (auth.jwt()->>'organization_id')::int"
TITLE = "x" * 100


# -- users -----------------------------------------------------------------------------------

def organization(user: int, organizations: int) -> int:
    return user % organizations + 1


def user_id(user: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ripple-bench-user-{user}"))


def user_tokens(count: int, organizations: int) -> list[str]:
    """One HS256 token per user, signed with the local stack's JWT secret, valid for a day."""
    import jwt

    from ripple.local.stack import DEV_JWT_SECRET

    now = int(time.time())
    return [jwt.encode({"iss": "ripple-bench", "aud": "authenticated", "role": "authenticated",
                        "sub": user_id(i), "organization_id": organization(i, organizations),
                        "iat": now, "exp": now + 86_400}, DEV_JWT_SECRET, algorithm="HS256")
            for i in range(count)]


# -- the server's side ---------------------------------------------------------------------------

@dataclass
class Authorization:
    """One batched `realtime.authorize` statement: its size and how long it took."""

    seconds: float
    principals: int
    images: int
    checks: int


class AuthorizeLog:
    """Times the fanout's AUTHORIZE statements by wrapping its `db.execute` (an instance
    attribute shadows the method, so only the fanout's Database is affected)."""

    def __init__(self, db):
        from ripple.outbox.drain import AUTHORIZE

        self.sql = AUTHORIZE
        self.execute = db.execute
        self.calls: list[Authorization] = []
        db.execute = self

    def __call__(self, conn, sql, params=None):
        if sql != self.sql:
            return self.execute(conn, sql, params)
        started = time.perf_counter()
        rows = self.execute(conn, sql, params)
        seconds = time.perf_counter() - started
        request = json.loads(params[0])
        self.calls.append(Authorization(seconds, len(request["principals"]),
                                        len(request["images"]), len(request["checks"])))
        return rows


@dataclass
class Result:
    """One table's measurements for one set of subscribers."""

    mode: str
    subscribers: int
    changes: int
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    violations: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    span_seconds: float = 0.0
    runs: int = 0
    batches: int = 0
    batch_round_trips: int = 0  # Postgres statements of the runs that drained a batch
    drained: list[int] = field(default_factory=list)  # changes per run that found any
    cost: Counters = field(default_factory=Counters)
    authorizations: list[Authorization] = field(default_factory=list)


@dataclass
class Round:
    """One set of subscribers: joined once with a binding on each table, measured on each."""

    subscribers: int
    joined: int = 0
    join_seconds: float = 0.0
    cleanup_seconds: float = 0.0  # from closing the sockets until $disconnect removed their rows
    seconds: float = 0.0
    results: list[Result] = field(default_factory=list)


def prepare_tables(db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        # One sequence for both tables, so a row id says which table it came from.
        conn.execute("create sequence if not exists public.bench_docs_id")
        for mode, table in TABLES.items():
            conn.execute(f"create table if not exists public.{table} (id bigint primary key "
                         "default nextval('public.bench_docs_id'), organization_id int not null, "
                         "owner uuid, title text, written_at timestamptz)")
            conn.execute(f"grant select on public.{table} to authenticated")
            if mode == "rls":
                conn.execute(f"alter table public.{table} enable row level security")
                conn.execute(f'drop policy if exists "organization reads" on public.{table}')
                conn.execute(f'create policy "organization reads" on public.{table} for select '
                             f"to authenticated using ({POLICY})")
            published = conn.execute("select 1 from pg_publication_tables where pubname = "
                                     "'supabase_realtime' and tablename = %s", (table,)).fetchone()
            if not published:
                conn.execute(f"alter publication supabase_realtime add table public.{table}")


def run_round(stack, clients: Clients, wakes: WakeLog, authorizations: AuthorizeLog, args,
              modes: list[str], count: int) -> Round:
    started = time.monotonic()
    users = Round(subscribers=count)
    opened = clients.call("open", count=count, eq=False, concurrency=args.concurrency,
                          tables=tuple(TABLES[mode] for mode in modes),
                          tokens=user_tokens(count, args.organizations))
    users.joined, users.join_seconds = opened["joined"], opened["seconds"]
    if opened["failed"]:
        print(f"  {opened['failed']} of {count} subscribers failed to join, "
              f"e.g. {opened['failures']}", file=sys.stderr)
    for mode in modes:
        print(f"  {mode}: {count} subscribers ...", file=sys.stderr, flush=True)
        users.results.append(measure(stack, clients, wakes, authorizations, args, mode, count,
                                     opened["indexes"]))
    closing = time.monotonic()
    clients.call("close")
    left = wait_for_cleanup(stack.aws_url)
    users.cleanup_seconds = time.monotonic() - closing
    if left:
        print(f"  $disconnect left {left} connection/binding rows behind", file=sys.stderr)
    users.seconds = time.monotonic() - started
    return users


def measure(stack, clients: Clients, wakes: WakeLog, authorizations: AuthorizeLog, args,
            mode: str, count: int, joined: list[int]) -> Result:
    """Commit `args.changes` rows to the mode's table and collect what the subscribers get."""
    import psycopg

    table, orgs = TABLES[mode], args.organizations
    result = Result(mode=mode, subscribers=count, changes=args.changes)
    # Only the subscribers that joined can receive; a failed join is reported, not waited for.
    members: dict[int, int] = {}  # organization -> joined subscribers in it
    for index in joined:
        members[organization(index, orgs)] = members.get(organization(index, orgs), 0) + 1

    wait_until_idle(wakes)
    before, wakes.runs, authorizations.calls = Counters.now(), [], []
    row_org: dict[int, int] = {}  # row id -> organization_id
    committed: dict[int, float] = {}  # row id -> time.time() right after commit returned
    interval = args.interval_ms / 1000
    with psycopg.connect(stack.db_url) as conn:
        start = time.monotonic()
        for j in range(args.changes):
            if interval:
                time.sleep(max(0.0, start + j * interval - time.monotonic()))
            org = organization(j, orgs)
            row_id = conn.execute(
                f"insert into public.{table} (organization_id, owner, title, written_at) "
                "values (%s, %s, %s, now()) returning id",
                (org, user_id(org - 1), TITLE)).fetchone()[0]
            conn.commit()
            committed[row_id] = time.time()
            row_org[row_id] = org

    if mode == "rls":
        result.expected = sum(members.get(org, 0) for org in row_org.values())
    else:
        result.expected = len(row_org) * len(joined)
    collected = clients.call("collect", expected=result.expected, stall_seconds=args.timeout)
    wait_until_idle(wakes)
    # Frames beyond the expected count (violations, duplicates) may land after collect returned.
    late = clients.call("collect", expected=0, stall_seconds=0)
    arrivals = collected["arrivals"] + late["arrivals"]
    if collected["other_frames"] + late["other_frames"]:
        print(f"  {collected['other_frames'] + late['other_frames']} frames other than "
              "postgres_changes arrived", file=sys.stderr)
    result.cost = Counters.now() - before
    result.runs = len(wakes.runs)
    result.authorizations = list(authorizations.calls)
    drained = [stats for _, stats in wakes.runs if stats["batches"]]
    result.batches = sum(stats["batches"] for stats in drained)
    result.batch_round_trips = sum(stats["pg_round_trips"] for stats in drained)
    result.drained = [stats["changes"] for stats in drained]

    seen: set[tuple[int, int]] = set()
    last_arrival = 0.0
    for index, row_id, arrived in arrivals:
        if row_id not in committed:
            continue
        if mode == "rls" and row_org[row_id] != organization(index, orgs):
            result.violations += 1
            continue
        if (index, row_id) in seen:
            result.duplicates += 1
            continue
        seen.add((index, row_id))
        result.latencies_ms.append((arrived - committed[row_id]) * 1000)
        last_arrival = max(last_arrival, arrived)
    result.received = len(seen)
    result.latencies_ms.sort()
    if committed and last_arrival:
        result.span_seconds = last_arrival - min(committed.values())
    return result


def render(results: list[Result]) -> str:
    header = ("| table | subscribers | changes | authorized delivered / expected | violations "
              "| p50 ms | p95 ms | p99 ms | deliveries/s | batches | PG round trips / batch "
              "| principals / batch | checks / batch | authorize ms / batch "
              "| DynamoDB calls / batch | PostToConnection / change |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        batches = max(r.batches, 1)
        rate = r.received / r.span_seconds if r.span_seconds else 0.0
        delivered = f"{r.received} / {r.expected}"
        if r.duplicates:
            delivered += f" ({r.duplicates} duplicate)"
        auth = r.authorizations
        lines.append(
            f"| {r.mode} | {r.subscribers} | {r.changes} | {delivered} "
            f"| {r.violations if r.mode == 'rls' else '-'} "
            f"| {latency_cells(r.latencies_ms)} | {rate:.0f} | {r.batches} "
            f"| {r.batch_round_trips / batches:.1f} "
            f"| {sum(a.principals for a in auth) / batches:.0f} "
            f"| {sum(a.checks for a in auth) / batches:.0f} "
            f"| {sum(a.seconds for a in auth) * 1000 / batches:.1f} "
            f"| {r.cost.dynamodb / batches:.1f} | {r.cost.posts / max(r.changes, 1):.2f} |")
    return "\n".join(lines)


def describe(r: Result) -> str:
    auth = r.authorizations
    images = sum(a.images for a in auth)
    longest = max((a.seconds for a in auth), default=0.0)
    per_check = sum(a.seconds for a in auth) / max(sum(a.checks for a in auth), 1) * 1e6
    drained = f"{min(r.drained)}-{max(r.drained)}" if r.drained else "-"
    return (f"{r.mode}/{r.subscribers}: {r.runs} fanout runs, {r.batches} batches, changes per "
            f"draining run {drained}; {len(auth)} authorize statements over {images} row images "
            f"for {r.changes} changes, longest {longest * 1000:.0f} ms, "
            f"{per_check:.0f} us per check")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=30,
                        help="rows committed per table and round, one transaction each "
                             "(default: %(default)s)")
    parser.add_argument("--organizations", type=int, default=10,
                        help="organizations the users and rows are spread over "
                             "(default: %(default)s)")
    parser.add_argument("--mode", choices=("rls", "open", "both"), default="both",
                        help="the table with RLS, the same table without, or both "
                             "(default: %(default)s)")
    add_round_options(parser, sizes="--subscribers",
                      sizes_help="subscriber counts, one round each; every subscriber is a distinct user",
                      interval_ms=20.0, who="subscribers",
                      interval_help="pace between commits; 0 commits as fast as possible")
    args = parser.parse_args()
    if args.organizations < 1:
        parser.error("--organizations must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    configure()

    pacing = (f"one commit every {args.interval_ms:g} ms" if args.interval_ms
              else "commits back to back")
    print_header(f"{args.changes} INSERTs per table and round, {pacing}; every subscriber a "
                 f"distinct `authenticated` user, spread over {args.organizations} organizations; "
                 f"rls = public.{TABLES['rls']} with policy `{POLICY}`, "
                 f"open = public.{TABLES['open']} without RLS; "
                 f"latency = arrival at the client - commit returned")

    modes = ["rls", "open"] if args.mode == "both" else [args.mode]
    rounds: list[Round] = []
    started = time.monotonic()
    with local_stack() as stack:
        clients = None
        try:
            from ripple.outbox.drain import fanout

            prepare_tables(stack.db_url)
            wakes = watch_fanout(stack)
            authorizations = AuthorizeLog(fanout().db)
            # Users connect with the anon key and join with their own token, as supabase-js does.
            clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Subscribers)
            for count in args.counts:
                rounds.append(run_round(stack, clients, wakes, authorizations, args, modes,
                                        count))
        except KeyboardInterrupt:
            print("interrupted; stopping the stack", file=sys.stderr)
        finally:
            if clients is not None:
                clients.stop()
    print()
    print(render([r for one in rounds for r in one.results]))
    print()
    for one in rounds:
        print(f"{one.subscribers} users: {one.joined} joined in {one.join_seconds:.1f} s, "
              f"each with a binding on {' and '.join(TABLES[r.mode] for r in one.results)}; "
              f"cleanup {one.cleanup_seconds:.1f} s; {one.seconds:.0f} s in all")
        for r in one.results:
            print("  " + describe(r))
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
