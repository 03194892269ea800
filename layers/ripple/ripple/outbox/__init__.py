"""The outbox drain: what wakes the fanout, and the loop that delivers committed rows."""
