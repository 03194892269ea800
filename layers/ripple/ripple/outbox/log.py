"""The message log's upkeep: day partitions made ahead and dropped past the retention window.

Delivered changes stay in the outbox, numbered by the acks' rows in `realtime.log_acks`, and
`realtime.send` messages move into `realtime.log` at ack (sql/012_message_log.sql,
sql/013_outbox_log.sql); this is the part that runs on the fanout's scheduled sweep.
"""
from __future__ import annotations

import psycopg

from ripple.db import Database
from ripple.log import logger

MAINTAIN = "select realtime.log_maintain() as dropped"


def expire(db: Database) -> int:
    """Create the coming days' partitions and drop the expired ones; returns how many were
    dropped. A failure is logged, never failing the sweep it runs in (the next sweep retries)."""
    try:
        with db.transaction() as conn:
            rows = db.execute(conn, MAINTAIN)
    except psycopg.Error:
        logger.exception("message log upkeep failed")
        return 0
    dropped = int(rows[0]["dropped"]) if rows else 0
    if dropped:
        logger.info("message log partitions expired", extra={"dropped": dropped})
    return dropped
