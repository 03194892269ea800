"""The store on DynamoDB (see docs/architecture.md).

- connections table, key `connection_id`: one row per open socket, TTL `expires_at`.
- bindings table, key (`pk` bucket, `sk`), GSI `by_connection`: binding rows (store.bindings),
  member rows under `topic:<topic>` and presence holders (store.members). A connection's rows, or
  one channel's, are found with one Query on the index.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from boto3.dynamodb.table import BatchWriter
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from ripple import codec
from ripple.aws import clients
from ripple.config import settings
from ripple.store.base import Store
from ripple.store.bindings import REGISTRY_SK, Binding
from ripple.store.connections import Connection, Entered, last_heard
from ripple.store.exceptions import NoConnection, TooManyChannels
from ripple.store.lean import LeanBatchGet, LeanReadFailed
from ripple.store.members import PRESENCE_HOLDERS, TOPIC_PREFIX, Member, topic_key
from ripple.store.warm import VERSION_SK, Bucket, WarmBuckets

_ser = TypeSerializer()
_de = TypeDeserializer()


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


@dataclass
class DynamoDBStore(Store):
    """Connections, bindings and members in two DynamoDB tables; `calls` counts requests."""

    client: Any
    connections_table: str
    bindings_table: str
    calls: int = field(default=0)
    # Bucket Queries of one batch run concurrently.
    query_concurrency: int = 16
    # Buckets read before, reused while their version stands (bindings_under).
    warm: WarmBuckets = field(default_factory=WarmBuckets, repr=False)
    # The per-batch version read without botocore's per-call CPU (None: through `client`).
    lean: LeanBatchGet | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls) -> DynamoDBStore:
        config = settings()
        client = clients().dynamodb
        return cls(client, config.connections_table, config.bindings_table, lean=LeanBatchGet.for_client(client),
                   warm=WarmBuckets(max_age=config.warm_max_age_seconds))

    # -- connections ----------------------------------------------------------------------------
    def put_connection(self, connection: Connection) -> None:
        self.calls += 1
        self.client.put_item(TableName=self.connections_table, Item=_item(asdict(connection)))

    def touch(self, connection_id: str, now: float) -> None:
        """Record that the client was heard from (its heartbeat): the presence sweep departs
        connections silent for longer than the clients' heartbeat allows."""
        self.calls += 1
        try:
            self.client.update_item(
                TableName=self.connections_table, Key=_item({"connection_id": connection_id}),
                UpdateExpression="SET last_seen = :now", ConditionExpression="attribute_exists(connection_id)",
                ExpressionAttributeValues={":now": {"N": str(int(now))}})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass

    def last_heard(self, connection_ids: Iterable[str]) -> dict[str, float]:
        """When each connection was last heard from, in epoch seconds: `last_seen`, else
        `connected_at`; a connection without a row is absent from the answer.

        BatchGetItem, 100 keys a request; eventually consistent, which is at most one
        heartbeat behind.
        """
        keys = [_item({"connection_id": cid}) for cid in sorted(set(connection_ids))]
        return {row["connection_id"]: last_heard(row) for row in self._batch_get(
            self.connections_table, keys, "connection_id, last_seen, connected_at")}

    def get_connection(self, connection_id: str) -> Connection | None:
        self.calls += 1
        found = self.client.get_item(TableName=self.connections_table,
                                     Key=_item({"connection_id": connection_id}),
                                     ConsistentRead=True).get("Item")
        return self._connection(_plain(found)) if found else None

    @staticmethod
    def _connection(row: dict[str, Any]) -> Connection:
        return Connection(connection_id=row["connection_id"], role=row["role"], claims=row["claims"],
                          connected_at=int(row["connected_at"]), expires_at=int(row["expires_at"]),
                          last_seen=int(row["last_seen"]) if "last_seen" in row else None)

    def enter_channel(self, connection_id: str, topic: str, limit: int) -> Entered:
        """Count `topic` among the connection's channels; returns the connection and whether the
        topic was counted before (a rejoin), both from the one UpdateItem's old image.

        Raises NoConnection if the connection is not registered, TooManyChannels past `limit`.
        """
        self.calls += 1
        try:
            row = self.client.update_item(
                TableName=self.connections_table, Key=_item({"connection_id": connection_id}),
                UpdateExpression="ADD channels :t",
                ConditionExpression="attribute_exists(connection_id) AND (attribute_not_exists(channels)"
                                    " OR size(channels) < :max OR contains(channels, :one))",
                ExpressionAttributeValues={":t": {"SS": [topic]}, ":one": {"S": topic},
                                           ":max": {"N": str(limit)}},
                # The row before the ADD: the update changes only `channels`.
                ReturnValues="ALL_OLD")["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException:
            if self.get_connection(connection_id) is None:
                raise NoConnection(connection_id) from None
            raise TooManyChannels(limit) from None
        before = _plain(row)
        return Entered(self._connection(before), topic in before.get("channels", ()))

    def leave_channel(self, connection_id: str, topic: str) -> None:
        self.calls += 1
        try:
            self.client.update_item(
                TableName=self.connections_table, Key=_item({"connection_id": connection_id}),
                UpdateExpression="DELETE channels :t", ConditionExpression="attribute_exists(connection_id)",
                ExpressionAttributeValues={":t": {"SS": [topic]}})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass

    def spend(self, connection_id: str, limit: int, now: float, counter: str = "rate") -> bool:
        """Count one event in the connection's current one-second window of `counter`; False past `limit`."""
        window = {"N": str(int(now))}
        key = _item({"connection_id": connection_id})
        names = {"#w": f"{counter}_window", "#c": f"{counter}_count"}
        try:
            self.calls += 1
            self.client.update_item(
                TableName=self.connections_table, Key=key, UpdateExpression="ADD #c :one",
                ConditionExpression="#w = :w AND #c < :limit", ExpressionAttributeNames=names,
                ExpressionAttributeValues={":one": {"N": "1"}, ":w": window, ":limit": {"N": str(limit)}})
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            pass
        try:
            self.calls += 1
            self.client.update_item(
                TableName=self.connections_table, Key=key, UpdateExpression="SET #w = :w, #c = :one",
                ConditionExpression="attribute_exists(connection_id) AND (attribute_not_exists(#w) OR #w <> :w)",
                ExpressionAttributeNames=names, ExpressionAttributeValues={":one": {"N": "1"}, ":w": window})
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False

    def delete_connection(self, connection_id: str) -> list[Member]:
        """Forget a connection and every row it held (on $disconnect or a 410); returns the
        channel memberships it had, read by the same Query that found the rows."""
        self.calls += 1
        self.client.delete_item(TableName=self.connections_table,
                                Key=_item({"connection_id": connection_id}))
        rows = self._rows_of(connection_id)
        self._delete_keys([{"pk": row["pk"], "sk": row["sk"]} for row in rows])
        self._bump({row["pk"] for row in rows if _is_binding(row)})
        return [self._member(row) for row in rows if _is_member(row)]

    # -- bindings -------------------------------------------------------------------------------
    def add_bindings(self, bindings: list[Binding], indexed: dict[str, set[str]], expires_at: int) -> None:
        """Store a new channel's bindings; `indexed` maps table buckets to the eq columns they add."""
        grown = set()
        for bucket, columns in indexed.items():
            self.calls += 1
            before = self.client.update_item(
                TableName=self.bindings_table,
                Key=_item({"pk": bucket, "sk": REGISTRY_SK}),
                UpdateExpression="ADD #c :c",
                ExpressionAttributeNames={"#c": "columns"},
                ExpressionAttributeValues={":c": {"SS": sorted(columns)}},
                ReturnValues="UPDATED_OLD",
            ).get("Attributes", {}).get("columns", {}).get("SS", [])
            if not columns <= set(before):
                grown.add(bucket)
        # The registry is part of its table bucket as readers keep it warm.
        self._bump(grown)
        self.put_bindings(bindings, expires_at)

    def remove_channel(self, connection_id: str, topic: str) -> Member | None:
        """Delete every row of one channel (bindings, membership, presence holder); returns the
        membership it had, read by the same Query that found the rows."""
        rows = self._rows_of(connection_id, topic)
        self._delete_keys([{"pk": row["pk"], "sk": row["sk"]} for row in rows])
        self._bump({row["pk"] for row in rows if _is_binding(row)})
        return next((self._member(row) for row in rows if _is_member(row)), None)

    def channel(self, connection_id: str, topic: str) -> tuple[Member | None, list[Binding]]:
        """One channel of one connection: its membership and its bindings, in one Query."""
        rows = self._rows_of(connection_id, topic)
        member = next((self._member(row) for row in rows if _is_member(row)), None)
        return member, [self._binding(row) for row in rows if _is_binding(row)]

    def put_bindings(self, bindings: list[Binding], expires_at: int) -> None:
        """Overwrite bindings in place (same keys), e.g. with a channel's refreshed claims."""
        with self._batch() as batch:
            for b in bindings:
                batch.put_item(Item=_item(self._binding_row(b, expires_at)))
        # After the rows: a reader that sees the new version then finds them (store.warm).
        self._bump({b.bucket for b in bindings})

    def bindings_under(self, buckets: Iterable[str]) -> tuple[dict[str, list[Binding]], dict[str, set[str]]]:
        """Bindings per bucket, and the eq-indexed columns registered under table buckets.

        One BatchGetItem reads the buckets' versions; only buckets changed since this container
        last read them are Queried (store.warm). The lists returned are shared: do not modify."""
        wanted = sorted(set(buckets))
        found: dict[str, list[Binding]] = {}
        registry: dict[str, set[str]] = {}
        if not wanted:
            return found, registry
        versions = self._versions(wanted)
        entries: dict[str, Bucket | None] = {b: self.warm.get(b, versions[b]) for b in wanted}
        stale = [b for b, entry in entries.items() if entry is None]
        if stale:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.query_concurrency,
                                                thread_name_prefix="ripple-store-query")
            for bucket, rows in zip(stale, self._pool.map(self._query_bucket, stale)):
                entries[bucket] = fresh = self._bucket(versions[bucket], rows)
                self.warm.put(bucket, fresh)
        for bucket, entry in entries.items():
            if entry is not None:
                found[bucket] = entry.bindings
                if entry.columns is not None:
                    registry[bucket] = entry.columns
        return found, registry

    def _bucket(self, version: str, rows: list[dict[str, Any]]) -> Bucket:
        bindings: list[Binding] = []
        columns: set[str] | None = None
        for row in rows:
            if row["sk"] == REGISTRY_SK:
                columns = set(row.get("columns", ()))
            elif row["sk"] != VERSION_SK:
                bindings.append(self._binding(row))
        return Bucket(version, bindings, columns, time.monotonic())

    def _versions(self, buckets: list[str]) -> dict[str, str]:
        """Each bucket's version ("" if it has none): strongly consistent, 100 keys a request."""
        versions = dict.fromkeys(buckets, "")
        keys = [{"pk": {"S": b}, "sk": {"S": VERSION_SK}} for b in buckets]
        for row in self._batch_get(self.bindings_table, keys, "pk, v", consistent=True, lean=True):
            versions[row["pk"]] = row["v"]
        return versions

    def _batch_get(self, table: str, keys: list[dict[str, Any]], projection: str,
                   consistent: bool = False, lean: bool = False) -> Iterator[dict[str, Any]]:
        """The items at `keys` that exist, as plain rows: BatchGetItem, 100 keys a request, keys
        left unprocessed asked again with a doubling wait. With `lean` (string attributes only:
        the wire format is not unwrapped as botocore would), through the lean reader first."""
        for start in range(0, len(keys), 100):
            pending = {table: {"Keys": keys[start:start + 100], "ProjectionExpression": projection,
                               "ConsistentRead": consistent}}
            for attempt in range(8):
                self.calls += 1
                answer = self._batch_get_item(pending, lean)
                yield from (_plain(item) for item in answer.get("Responses", {}).get(table, ()))
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise RuntimeError("DynamoDB kept keys unprocessed after retries")

    def _batch_get_item(self, pending: dict[str, Any], lean: bool) -> dict[str, Any]:
        if lean and self.lean is not None:
            try:
                return self.lean.batch_get_item(pending)
            except LeanReadFailed:
                pass  # asked again through boto3: its retries and errors apply
        answer: dict[str, Any] = self.client.batch_get_item(RequestItems=pending)
        return answer

    def _bump(self, buckets: set[str]) -> None:
        """Tell warm readers these buckets' bindings changed (after the change is written).

        A version is a fresh random value, never a count: one that TTL removed and writes
        recreated cannot come back equal to one a reader holds. It outlives the rows written
        before it (the same TTL, set later)."""
        expires_at = {"N": str(int(time.time()) + settings().connection_ttl_seconds)}
        for bucket in sorted(buckets):
            self.calls += 1
            self.client.update_item(TableName=self.bindings_table,
                                    Key={"pk": {"S": bucket}, "sk": {"S": VERSION_SK}},
                                    UpdateExpression="SET v = :v, expires_at = :e",
                                    ExpressionAttributeValues={":v": {"S": secrets.token_hex(8)},
                                                               ":e": expires_at})

    # -- channel members ------------------------------------------------------------------------
    def put_member(self, member: Member, expires_at: int) -> None:
        self.calls += 1
        self.client.put_item(TableName=self.bindings_table, Item=_item({
            "pk": topic_key(member.topic), "sk": member.connection_id,
            "connection_id": member.connection_id, "topic": member.topic, "vsn": member.vsn,
            "join_ref": member.join_ref, "broadcast_self": member.broadcast_self,
            "broadcast_ack": member.broadcast_ack, "presence_key": member.presence_key,
            "presence": codec.dumps(member.presence) if member.presence is not None else None,
            "private": member.private, "can_broadcast": member.can_broadcast,
            "can_track": member.can_track, "sees_broadcast": member.sees_broadcast,
            "sees_presence": member.sees_presence, "refused": member.refused,
            "log_ids": member.log_ids, "role": member.role, "claims": member.claims,
            "exp": member.exp, "expires_at": expires_at}))

    def member(self, connection_id: str, topic: str) -> Member | None:
        self.calls += 1
        found = self.client.get_item(TableName=self.bindings_table, ConsistentRead=True,
                                     Key=_item({"pk": topic_key(topic), "sk": connection_id})).get("Item")
        return self._member(_plain(found)) if found else None

    def members(self, topic: str) -> list[Member]:
        """Every member of `topic`: one Query (paginated), never a Scan."""
        return [self._member(row) for row in self._query_bucket(topic_key(topic))]

    def set_presence(self, connection_id: str, topic: str, meta: dict[str, Any] | None) -> None:
        """Record (or, with None, clear) what this connection tracks on `topic`.

        Tracking also lists the connection under the presence-holders bucket, which the sweep
        reads to find holders whose socket vanished without a `$disconnect`.
        """
        self.calls += 2
        key = _item({"pk": topic_key(topic), "sk": connection_id})
        holder = _item({"pk": PRESENCE_HOLDERS, "sk": f"{connection_id}#{topic}"})
        if meta is None:
            self.client.update_item(TableName=self.bindings_table, Key=key,
                                    UpdateExpression="REMOVE presence",
                                    ConditionExpression="attribute_exists(pk)")
            self.client.delete_item(TableName=self.bindings_table, Key=holder)
        else:
            self.client.update_item(TableName=self.bindings_table, Key=key,
                                    UpdateExpression="SET presence = :m",
                                    ConditionExpression="attribute_exists(pk)",
                                    ExpressionAttributeValues={":m": {"S": codec.dumps(meta)}})
            self.client.put_item(TableName=self.bindings_table, Item={
                **holder, **_item({"connection_id": connection_id, "topic": topic})})

    def set_write_access(self, connection_id: str, topic: str, broadcast: bool, presence: bool) -> None:
        """Remember what a private channel's policies let this member send."""
        self.calls += 1
        try:
            self.client.update_item(
                TableName=self.bindings_table, Key=_item({"pk": topic_key(topic), "sk": connection_id}),
                UpdateExpression="SET can_broadcast = :b, can_track = :p",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":b": {"BOOL": broadcast}, ":p": {"BOOL": presence}})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass  # the channel ended meanwhile

    def presence_holders(self) -> set[str]:
        """Connections tracking presence anywhere: one Query (the sweep's input)."""
        return {row["connection_id"] for row in self._query_bucket(PRESENCE_HOLDERS)}

    @staticmethod
    def _member(row: dict[str, Any]) -> Member:
        presence = row.get("presence")
        return Member(
            connection_id=row["connection_id"], topic=row["topic"], vsn=row["vsn"],
            join_ref=row.get("join_ref"), broadcast_self=bool(row.get("broadcast_self")),
            broadcast_ack=bool(row.get("broadcast_ack")), presence_key=row.get("presence_key", ""),
            presence=codec.loads(presence) if presence else None, private=bool(row.get("private")),
            can_broadcast=_known(row.get("can_broadcast")), can_track=_known(row.get("can_track")),
            sees_broadcast=bool(row.get("sees_broadcast", True)), sees_presence=bool(row.get("sees_presence", True)),
            refused=row.get("refused"), log_ids=bool(row.get("log_ids")),
            role=row.get("role", "anon"), claims=row.get("claims", "{}"), exp=int(row.get("exp", 0)))

    # -- internals ------------------------------------------------------------------------------
    def _query_bucket(self, bucket: str) -> list[dict[str, Any]]:
        return self._query({
            "TableName": self.bindings_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": bucket}},
            # A binding stored just before "Subscribed to PostgreSQL" must be seen by the next change.
            "ConsistentRead": True,
        })

    def _query(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """Every page of one Query, as plain rows."""
        rows: list[dict[str, Any]] = []
        while True:
            self.calls += 1
            page = self.client.query(**kwargs)
            rows.extend(_plain(item) for item in page.get("Items", ()))
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def _rows_of(self, connection_id: str, topic: str | None = None) -> list[dict[str, Any]]:
        """Every row a connection holds, or one channel's: one Query on the by_connection index."""
        kwargs: dict[str, Any] = {
            "TableName": self.bindings_table,
            "IndexName": "by_connection",
            "KeyConditionExpression": "connection_id = :c",
            "ExpressionAttributeValues": {":c": {"S": connection_id}},
        }
        if topic is not None:
            kwargs["FilterExpression"] = "topic = :t"
            kwargs["ExpressionAttributeValues"][":t"] = {"S": topic}
        return self._query(kwargs)

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        with self._batch() as batch:
            for key in keys:
                batch.delete_item(Key=_item(key))

    def _batch(self) -> BatchWriter:
        """boto3's batch writer on the bindings table: 25 items a request, unprocessed items
        resent; its requests are counted in `calls`."""
        return BatchWriter(self.bindings_table, _Counting(self), flush_amount=25)

    @staticmethod
    def _binding_row(b: Binding, expires_at: int) -> dict[str, Any]:
        return {
            "pk": b.bucket, "sk": b.sort_key,
            "connection_id": b.connection_id, "topic": b.topic, "binding_id": b.id,
            "event": b.event, "schema": b.schema, "table": b.table, "filter": b.filter,
            "select": codec.dumps(list(b.select)) if b.select is not None else None,
            "vsn": b.vsn, "role": b.role, "claims": b.claims, "join_ref": b.join_ref,
            "exp": b.exp, "positions": b.positions, "expires_at": expires_at,
        }

    @staticmethod
    def _binding(row: dict[str, Any]) -> Binding:
        select = row.get("select")
        return Binding(
            connection_id=row["connection_id"], topic=row["topic"], id=int(row["binding_id"]),
            event=row["event"], schema=row["schema"], table=row["table"], bucket=row["pk"],
            vsn=row["vsn"], filter=row.get("filter"),
            select=tuple(codec.loads(select)) if select else None,
            role=row.get("role", "anon"), claims=row.get("claims", "{}"), join_ref=row.get("join_ref"),
            exp=int(row.get("exp", 0)), positions=bool(row.get("positions")),
        )


@dataclass
class _Counting:
    """The low-level client, as the batch writer sees it, counting its requests."""

    store: DynamoDBStore

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        self.store.calls += 1
        return self.store.client.batch_write_item(**kwargs)


def _is_member(row: dict[str, Any]) -> bool:
    return row["pk"].startswith(TOPIC_PREFIX)


def _is_binding(row: dict[str, Any]) -> bool:
    # A connection's other rows: its memberships and its entries under the presence holders.
    return not _is_member(row) and row["pk"] != PRESENCE_HOLDERS and row["sk"] not in (REGISTRY_SK, VERSION_SK)


def _known(value: Any) -> bool | None:
    return None if value is None else bool(value)


@lru_cache(maxsize=1)
def store() -> DynamoDBStore:
    """The container-wide store, on the tables named by the settings."""
    return DynamoDBStore.from_settings()
