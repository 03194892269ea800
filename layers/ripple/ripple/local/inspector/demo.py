"""`make demo`: load the school-CRM example (sql/examples/school_crm.sql) and the demo's data
into the running local stack's database, then open the demo page.

    python -m ripple.local.inspector.demo --env .ripple/env
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from ripple.local.inspector.cli import read_env

ROOT = Path(__file__).resolve().parents[5]
SCRIPTS = (ROOT / "sql" / "examples" / "school_crm.sql", Path(__file__).with_name("seed.sql"))
# The demo's people, as the page lists them (ids from seed.sql).
USERS = {"ada": "1a000000-0000-4000-8000-000000000001", "tomas": "1a000000-0000-4000-8000-000000000002",
         "bea": "1b000000-0000-4000-8000-000000000001"}


def seed(db_url: str) -> None:
    """Apply the example schema and the demo rows (both re-runnable)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for script in SCRIPTS:
            with conn.transaction():
                conn.execute(script.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--env", required=True, help="the env file make dev writes")
    parser.add_argument("--no-open", action="store_true")
    args = parser.parse_args(argv)
    env = read_env(Path(args.env))
    if env is None:
        return 1
    seed(env["DATABASE_URL"])
    page = env["RIPPLE_INSPECTOR_URL"] + "/demo/"
    print(f"Demo data loaded. Open {page}?user=ada and {page}?user=bea (two schools), or "
          f"{page}?user=tomas beside Ada's to see presence. Write a row to watch it arrive:\n"
          "  make psql   then   update students set payment_status = 'overdue' "
          "where full_name = 'Leo Park';")
    opener = shutil.which("xdg-open") or shutil.which("open")
    if opener and not args.no_open:
        subprocess.Popen([opener, page + "?user=ada"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
