"""Broadcast: ephemeral messages from a client, the REST API or SQL to every member of a topic."""
