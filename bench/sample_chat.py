"""The peer: the fan-out algorithm of AWS's `simple-websockets-chat-app` sample, in Python.

Its `sendmessage` function answers every message the same way: Scan the connections table for
every connection id, then post the message to each one at once (`Promise.all` over aws-sdk's
`postToConnection`), deleting a connection that answers 410:

    connectionData = await ddb.scan({ TableName, ProjectionExpression: 'connectionId' }).promise();
    const postCalls = connectionData.Items.map(async ({ connectionId }) => {
      try { await apigwManagementApi.postToConnection({ ConnectionId: connectionId, Data }).promise(); }
      catch (e) { if (e.statusCode === 410) { await ddb.delete({ TableName, Key: { connectionId } }).promise(); }
                  else { throw e; } }
    });
    await Promise.all(postCalls);

Here the posts go out on 32 threads with boto3 (Python has no Promise.all over a non-blocking
SDK; 32 is aws-sdk's and the fanout's usual pool), and the table is the one the local stack's
`$connect` fills (one row per open socket, key `connection_id`).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

THREADS = 32


@dataclass
class Sent:
    posted: int = 0
    gone: int = 0
    failed: int = 0
    scanned: int = 0
    dynamodb_calls: int = 0


@dataclass
class SampleChat:
    """`sendmessage` of the sample against a connections table and a management API endpoint."""

    aws_url: str
    endpoint: str
    table: str
    region: str = "us-east-1"
    threads: int = THREADS
    posts: int = 0
    dynamodb_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.ddb = boto3.client("dynamodb", endpoint_url=self.aws_url, region_name=self.region)
        self.api = boto3.client("apigatewaymanagementapi", endpoint_url=self.endpoint,
                                region_name=self.region,
                                config=Config(max_pool_connections=self.threads,
                                              retries={"mode": "standard", "max_attempts": 3}))
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="sample-post")

    def connection_ids(self) -> list[str]:
        """Every connection id in the table: a Scan, every page."""
        ids: list[str] = []
        kwargs: dict = {"TableName": self.table, "ProjectionExpression": "connection_id"}
        while True:
            self.dynamodb_calls += 1
            page = self.ddb.scan(**kwargs)
            ids.extend(item["connection_id"]["S"] for item in page.get("Items", ()))
            if "LastEvaluatedKey" not in page:
                return ids
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _post(self, connection_id: str, data: bytes) -> str:
        with self._lock:
            self.posts += 1
        try:
            self.api.post_to_connection(ConnectionId=connection_id, Data=data)
            return "posted"
        except self.api.exceptions.GoneException:
            with self._lock:
                self.dynamodb_calls += 1
            self.ddb.delete_item(TableName=self.table, Key={"connection_id": {"S": connection_id}})
            return "gone"
        except Exception:  # noqa: BLE001 - the sample rethrows; a benchmark counts instead
            return "failed"

    def send(self, data: str) -> Sent:
        """One message to every connection in the table."""
        ids = self.connection_ids()
        body = data.encode()
        results = list(self.pool.map(lambda cid: self._post(cid, body), ids))
        return Sent(posted=results.count("posted"), gone=results.count("gone"),
                    failed=results.count("failed"), scanned=len(ids))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
