"""What the realtime core keeps about connections, bindings and members, behind one interface.

`store()` is the container's DynamoDB store; `MemoryStore` holds the same rows in memory.
"""
from ripple.store.base import Store
from ripple.store.bindings import MAX_INDEXED_VALUE, REGISTRY_SK, Binding, eq_key, table_key
from ripple.store.connections import Connection, Entered
from ripple.store.dynamodb import DynamoDBStore, store
from ripple.store.exceptions import NoConnection, TooManyChannels
from ripple.store.members import PRESENCE_HOLDERS, Member, topic_key
from ripple.store.memory import MemoryStore

__all__ = [
    "MAX_INDEXED_VALUE", "PRESENCE_HOLDERS", "REGISTRY_SK", "Binding", "Connection", "DynamoDBStore",
    "Entered", "MemoryStore", "Member", "NoConnection", "Store", "TooManyChannels", "eq_key", "store",
    "table_key", "topic_key",
]
