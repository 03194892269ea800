"""Sharded posting: a round of deliveries split across K posters by connection id, posted in
parallel (worker processes over pipes, or poster Lambda invocations), gathered before the drain
acks. `wire` is the shape both transports carry."""
