"""moto's server made fit to run for days: bounded memory, and a hook to journal every write.

Two moto behaviours made `make run` grow by hundreds of megabytes per few hundred jobs
(measured through the stack: 200 job creates +121 MB, the next 200 +316 MB, the next 200
+523 MB; in moto alone, 300 TransactWriteItems of one small item each +110, +328, +543 MB,
8 ms per call rising to 35 ms; after the fixes 10,000 creates +63 MB in all, 5 ms per call):
- every model object moto creates (each stored item, each message) is appended to a list per
  class for moto's web dashboard, and never released;
- TransactWriteItems deep-copies every table it touches before each call, to roll back on a
  failed condition: O(table) time per call, and each copy's items were kept by the list above.
`install_fixes()` turns off the tracking and rolls transactions back from copies of the items
they touch only. Both are patches of moto's classes, made here and never in `chalicelib/`.
"""

from __future__ import annotations

import copy
import threading
import types
from collections.abc import Callable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from local.state import WsgiApp

_installed = False


def install_fixes() -> None:
    """Patch moto for a long-lived server (idempotent)."""
    global _installed
    if _installed:
        return
    _untrack_models()
    _transactions_copy_only_their_items()
    _installed = True


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


def _untrack_models() -> None:
    """moto's dashboard (the only reader of the tracking lists) is not served by the stack."""
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    BaseModel.__new__ = staticmethod(_untracked_new)  # type: ignore[method-assign]
    reset_model_data()


def _transactions_copy_only_their_items() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy_but_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
        # moto's own rollback then puts back the very table it kept: a no-op; ours below
        # restores the items instead. The module's other deepcopy (of one item) still copies.
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(  # type: ignore[assignment]
        deepcopy=deepcopy_but_tables, copy=copy.copy
    )
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = _item_backups(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                _put_back(table, hash_value, range_value, item)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore


def _item_backups(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(table, hash, range, copy of the item or None) for each item a transaction may write."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    backups = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            if op_type not in ("Put", "Update", "Delete"):
                continue
            table = backend.get_table(op["TableName"])
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = (
                DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None
            )
            current = table.get_item(hash_value, range_value)
        except Exception:
            continue
        backups.append((table, hash_value, range_value, copy.deepcopy(current)))
    return backups


def _put_back(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
    if item is None:
        table.delete_item(hash_value, range_value)
    elif range_value is not None:
        table.items[hash_value][range_value] = item
    else:
        table.items[hash_value] = item


def one_dynamodb_request_at_a_time(app: WsgiApp) -> WsgiApp:
    """DynamoDB applies each request atomically; moto's server, one thread per request, does
    not: two conditional writes of one item arriving at once (the worker's concurrent runs
    taking a Forbid job's hold) could both pass their condition. Serializing the DynamoDB
    requests restores DynamoDB's behaviour (and keeps the journal in the order writes applied);
    the other services, SQS's long polls among them, stay concurrent."""
    lock = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            # The body is produced inside the lock: moto answers with a finished list.
            return list(app(environ, start_response))

    return serialized


class EmbeddedMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer on loopback whose WSGI app is wrapped (e.g. by the state journal)."""

    def __init__(self, port: int, wrap: Callable[[WsgiApp], WsgiApp]) -> None:
        install_fixes()
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self._wrap = wrap

    def _server_entry(self) -> None:
        # ThreadedMotoServer's own, with the app wrapped.
        app = one_dynamodb_request_at_a_time(
            self._wrap(DomainDispatcherApplication(create_backend_app))
        )
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()
