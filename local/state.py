"""What the local stack keeps in its state directory, and the lock that gives it one owner.

- `lock`: held with flock(2) while a stack runs (the kernel drops it when the process dies,
  even on kill -9): a second stack on the same directory refuses to start.
- `state.json`: the table's items and the queues' messages at the last compaction.
- `journal.jsonl`: one line per change since then, written (and flushed to the kernel) before
  the emulator answers the request that made it. A line holds the *result* of a write — the
  new image of each item it touched, the new state of each message — not the request, so
  replaying a line twice, or over a newer snapshot, gives the same state.

Flushed but not fsynced per write: the journal survives the death of the process (kill -9, a
crash), not a power cut of the machine, which may lose the last seconds of writes. An fsync
per write costs about 3 ms here, more than the write itself.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
SNAPSHOT = "state.json"
JOURNAL = "journal.jsonl"
LEGACY_SNAPSHOT = "table.json"  # the table alone, as stacks before the journal saved it
LEGACY_TABLE = "minion"
COMPACT_AFTER_RECORDS = 50_000
# moto remembers every receipt handle of every deleted message (to accept a repeated delete):
# forgotten past this many, so the set does not grow with every run the stack ever ran.
DELETED_HANDLES_KEPT = 10_000
# Requests that may change an item. PartiQL writes are not journaled: the service uses none.
DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
SQS_CHANGES = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PurgeQueue",
    }
)


class StateDirInUse(Exception):
    """Another process holds the state directory's lock."""


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Take the state directory's lock, or raise StateDirInUse; keep the handle open."""
    handle = open(state_dir / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise StateDirInUse(
            f"the state directory {state_dir} is in use by another minion stack"
            f"{f' (pid {holder})' if holder.isdigit() else ''}: stop that one first, or set "
            "MINION_STATE_DIR to another directory"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _key_of(table: Any, attributes: dict[str, Any]) -> dict[str, Any]:
    key = {table.hash_key_attr: attributes[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attributes[table.range_key_attr]
    return key


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def _message_state(message: Any) -> dict[str, Any]:
    return {
        "id": message.id,
        "body": message.body,
        "attributes": message.message_attributes,
        "system_attributes": message.system_attributes,
        "sent": message.sent_timestamp,
        "first_receive": message.approximate_first_receive_timestamp,
        "receives": message.approximate_receive_count,
        "visible_at": message.visible_at,
        "delayed_until": message.delayed_until,
        "group_id": message.group_id,
        "deduplication_id": message.deduplication_id,
    }


def _message_version(message: Any) -> tuple[Any, ...]:
    """What of a message can change after it is sent."""
    return (message.approximate_receive_count, message.visible_at, message.delayed_until)


class LocalState:
    """The emulator's tables and queues, persisted in a state directory by snapshot + journal.

    Those of the emulator's default account and region that exist when `restore()` runs (the
    stack creates its resources first): whatever queues and tables the service comes to use.
    """

    def __init__(self, directory: Path, region: str) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.sqs.models import sqs_backends

        self.directory = directory
        self.dynamodb = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
        self.sqs = sqs_backends[DEFAULT_ACCOUNT_ID][region]
        self.tables: tuple[str, ...] = ()
        self.queues: tuple[str, ...] = ()
        self._items_lock = threading.Lock()  # one item-writing request at a time
        self._queues_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._journal: IO[str] | None = None
        self._records = 0
        self._known: dict[str, dict[str, tuple[Any, ...]]] = {}

    # --- start and stop ---------------------------------------------------------------------

    def restore(self) -> tuple[int, int]:
        """Load the snapshot and replay the journal into the emulator; (items, messages)."""
        self.tables = tuple(self.dynamodb.tables)
        self.queues = tuple(self.sqs.queues)
        self._known = {q: {} for q in self.queues}
        tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in self.tables}
        queues: dict[str, dict[str, dict[str, Any]]] = {q: {} for q in self.queues}
        snapshot = self.directory / SNAPSHOT
        legacy = self.directory / LEGACY_SNAPSHOT
        if snapshot.exists():
            saved = json.loads(snapshot.read_text())
            for name, items in saved.get("tables", {}).items():
                table = self._table(name)
                if table is not None and name in tables:
                    tables[name] = {_key_text(_key_of(table, i)): i for i in items}
            for name, messages in saved.get("queues", {}).items():
                if name in queues:
                    queues[name] = {m["id"]: m for m in messages}
        elif legacy.exists() and LEGACY_TABLE in tables:
            table = self._table(LEGACY_TABLE)
            tables[LEGACY_TABLE] = {
                _key_text(_key_of(table, i)): i for i in json.loads(legacy.read_text())
            }
        for record in self._journal_records():
            if "item" in record:
                change = record["item"]
                if change["table"] in tables:
                    entries = tables[change["table"]]
                    entries.pop(_key_text(change["key"]), None)
                    if change["image"] is not None:
                        entries[_key_text(change["key"])] = change["image"]
            elif "message" in record:
                change = record["message"]
                if change["queue"] in queues:
                    messages = queues[change["queue"]]
                    messages.pop(change["id"], None)  # a changed message keeps its place
                    if change["state"] is not None:
                        messages[change["id"]] = change["state"]
        for name, entries in tables.items():
            for item in entries.values():
                self.dynamodb.put_item(name, item)
        for name, by_id in queues.items():
            self._load_messages(name, by_id.values())
        self.compact()  # the journal starts empty, the old state in one file
        if legacy.exists():
            legacy.unlink()
        return (sum(len(e) for e in tables.values()), sum(len(m) for m in queues.values()))

    def _journal_records(self) -> Iterable[dict[str, Any]]:
        path = self.directory / JOURNAL
        if not path.exists():
            return
        with path.open() as journal:
            for number, line in enumerate(journal, 1):
                try:
                    yield json.loads(line)
                except ValueError:
                    # Only the last line can be torn (the process died while writing it), and
                    # the request it belonged to was never answered.
                    print(f"{path}:{number}: ignoring a torn record", file=sys.stderr)

    def _load_messages(self, name: str, states: Iterable[dict[str, Any]]) -> None:
        from moto.sqs.models import Message

        queue = self.sqs.get_queue(name)
        for state in states:
            message = Message(state["id"], state["body"], state["system_attributes"])
            message.message_attributes = state["attributes"]
            message.sent_timestamp = state["sent"]
            message.approximate_first_receive_timestamp = state["first_receive"]
            message.approximate_receive_count = state["receives"]
            # A message in flight when the stack died comes back when its visibility
            # timeout ends, as in SQS: the run's lease keeps a second worker off it till then.
            message.visible_at = state["visible_at"]
            message.delayed_until = state["delayed_until"]
            message.group_id = state["group_id"]
            message.deduplication_id = state["deduplication_id"]
            queue.add_message(message)
            self._known[name][message.id] = _message_version(message)

    def compact(self) -> None:
        """Write the whole state to the snapshot and empty the journal."""
        with self._items_lock, self._queues_lock, self._file_lock:
            state = {
                "version": 1,
                "tables": {name: self._items(name) for name in self.tables},
                "queues": {
                    name: [_message_state(m) for m in self._messages(name)] for name in self.queues
                },
            }
            temporary = self.directory / (SNAPSHOT + ".tmp")
            with temporary.open("w") as out:
                json.dump(state, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(self.directory / SNAPSHOT)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself, before the journal is emptied
            finally:
                os.close(directory)
            if self._journal is None:
                self._journal = (self.directory / JOURNAL).open("a")
            self._journal.truncate(0)
            self._records = 0

    def compact_if_long(self) -> None:
        """Compact when the journal has grown past COMPACT_AFTER_RECORDS."""
        if self._records > COMPACT_AFTER_RECORDS:
            self.compact()

    def maintain(self, now: float) -> int:
        """Expire items past their TTL, bound moto's memory of deleted messages, compact when
        the journal is long; how many items expired."""
        expired = self.expire_items(now)
        for name in self.queues:
            queue = self.sqs.queues.get(name)
            if queue is not None and len(queue.deleted_messages) > DELETED_HANDLES_KEPT:
                queue.deleted_messages.clear()
        self.compact_if_long()
        return expired

    def expire_items(self, now: float) -> int:
        """Delete (and journal) the items whose TTL attribute is past, as DynamoDB's TTL does
        (moto's tables never expire anything); how many."""
        expired = 0
        for name in self.tables:
            table = self._table(name)
            if table is None or table.ttl.get("TimeToLiveStatus") != "ENABLED":
                continue
            attribute = table.ttl["AttributeName"]
            with self._items_lock:
                records = []
                for item in self._item_objects(table):
                    value = item.attrs.get(attribute)
                    if value is None or value.type != "N" or float(value.value) >= now:
                        continue
                    table.delete_item(item.hash_key, item.range_key)
                    key = _key_of(table, item.to_json()["Attributes"])
                    records.append({"item": {"table": name, "key": key, "image": None}})
                self._append(records)
                expired += len(records)
        return expired

    def close(self) -> None:
        """Compact at a stop. The journal stays open: a request still in flight (a worker
        thread that outlived its join) is journaled after the snapshot, and replayed."""
        self.compact()

    # --- reading the emulator ---------------------------------------------------------------

    def _table(self, name: str) -> Any:
        return self.dynamodb.tables.get(name)

    @staticmethod
    def _item_objects(table: Any) -> list[Any]:
        if table.range_key_attr is None:
            return list(table.items.values())
        return [i for by_range in table.items.values() for i in by_range.values()]

    def _items(self, name: str) -> list[dict[str, Any]]:
        table = self._table(name)
        return (
            [] if table is None else [i.to_json()["Attributes"] for i in self._item_objects(table)]
        )

    def _messages(self, name: str) -> list[Any]:
        queue = self.sqs.queues.get(name)
        return list(queue._messages) if queue is not None else []

    # --- the journal ------------------------------------------------------------------------

    def _append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._file_lock:
            if self._journal is None:  # before restore(): the emulator holds nothing to keep yet
                return
            self._journal.write(text)
            self._journal.flush()
            self._records += len(records)

    def _item_changes(self, action: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The current image of every item of our tables that the request names."""
        touched: list[tuple[str, dict[str, Any]]] = []
        if action == "PutItem":
            touched.append((request["TableName"], request["Item"]))
        elif action in ("UpdateItem", "DeleteItem"):
            touched.append((request["TableName"], request["Key"]))
        elif action == "BatchWriteItem":
            for name, writes in request["RequestItems"].items():
                for write in writes:
                    if "PutRequest" in write:
                        touched.append((name, write["PutRequest"]["Item"]))
                    else:
                        touched.append((name, write["DeleteRequest"]["Key"]))
        elif action == "TransactWriteItems":
            for entry in request["TransactItems"]:
                for op_type, op in entry.items():
                    if op_type in ("Put", "Update", "Delete"):
                        touched.append(
                            (op["TableName"], op["Item"] if op_type == "Put" else op["Key"])
                        )
        from moto.dynamodb.models.dynamo_type import DynamoType

        records = []
        for name, attributes in touched:
            table = self._table(name)
            if table is None or table.name not in self.tables:
                continue
            key = _key_of(table, attributes)
            item = table.get_item(
                DynamoType(key[table.hash_key_attr]),
                DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None,
            )
            records.append(
                {
                    "item": {
                        "table": table.name,
                        "key": key,
                        "image": item.to_json()["Attributes"] if item else None,
                    }
                }
            )
        return records

    def _queue_changes(self) -> list[dict[str, Any]]:
        """Messages sent, received, moved, made visible or deleted since the last call."""
        records = []
        for name in self.queues:
            known = self._known[name]
            current = {}
            for message in self._messages(name):
                version = _message_version(message)
                current[message.id] = version
                if known.get(message.id) != version:
                    records.append(
                        {
                            "message": {
                                "queue": name,
                                "id": message.id,
                                "state": _message_state(message),
                            }
                        }
                    )
            records.extend(
                {"message": {"queue": name, "id": gone, "state": None}}
                for gone in known.keys() - current.keys()
            )
            self._known[name] = current
        return records

    # --- the WSGI wrapper -------------------------------------------------------------------

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """`app`, journaling each change before its answer is sent."""

        def journaled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            service, _, action = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
            body = b""
            if not service and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                body = _read_body(environ)  # SQS's older query protocol names the action here
                action = (parse_qs(body.decode("utf-8", "replace")).get("Action") or [""])[0]
                service = "AmazonSQS" if action in SQS_CHANGES else ""
            if service.startswith("DynamoDB_") and action in DYNAMODB_WRITES:
                body = _read_body(environ)
                with self._items_lock:
                    answer = _call(app, environ)
                    try:
                        records = self._item_changes(action, json.loads(body))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        records = []  # a malformed request: refused by moto, nothing written
                    self._append(records)
            elif service == "AmazonSQS" and action in SQS_CHANGES:
                answer = _call(app, environ)
                with self._queues_lock:
                    self._append(self._queue_changes())
            else:
                return app(environ, start_response)
            status, headers, content = answer
            start_response(status, headers)
            return [content]

        return journaled


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, left readable for the app."""
    if "minion.body" in environ:
        return environ["minion.body"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["minion.body"] = body
    return body


def _call(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to completion: (status, headers, body)."""
    answer: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        answer["status"], answer["headers"] = status, headers
        return written.append

    result = app(environ, start_response)
    try:
        written.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return answer["status"], answer["headers"], b"".join(written)
