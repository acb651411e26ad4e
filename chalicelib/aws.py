"""boto3 clients of the service's own account: created lazily from one session, cached, with
standard retries."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

# Standard mode retries throttling and transient errors with backoff; the budget is small
# so that an API request fails fast (503) instead of hanging when DynamoDB throttles hard.
# The requests are built by the store and the queue, never from raw input, and DynamoDB and
# SQS validate them again: botocore's client-side check of every request (about a third of
# the client's CPU per call, measured by `make bench`) is not repeated here.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
    parameter_validation=False,
)

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[str, Any] = {}


def session() -> boto3.session.Session:
    """The process's boto3 session: service models, endpoints and credentials load once.

    A session per client would load them again for each one (tens of milliseconds of a cold
    start each).
    """
    global _session
    with _lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def client(service: str) -> Any:
    """A cached client for `service` in the function's own account and region."""
    found = _clients.get(service)
    if found is None:
        shared = session()
        with _lock:  # a session is not thread-safe; clients are
            found = _clients.get(service)
            if found is None:
                found = _clients[service] = shared.client(service, config=CLIENT_CONFIG)
    return found


class LazyClient:
    """Stands for `client(service)`, created on first use: a function that never calls the
    service does not pay for creating its client (about 45 ms of CPU for SQS, measured)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self.service), name)


def new_client(
    service: str, *, from_session: boto3.session.Session | None = None, **options: Any
) -> Any:
    """A new, uncached client from `session` (default: the process's), made under the lock
    that client creation needs (a session is not thread-safe; clients are)."""
    shared = from_session or session()
    with _lock:
        return shared.client(service, **options)


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, or None for any other exception."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def region() -> str:
    """The function's own region."""
    return session().region_name or "us-east-1"


_own_account: list[str] = []


def own_account_id() -> str:
    """The function's own AWS account (STS GetCallerIdentity, which needs no permission),
    asked once per process."""
    if not _own_account:
        _own_account.append(str(client("sts").get_caller_identity()["Account"]))
    return _own_account[0]


def reset_clients() -> None:
    """Forget the session and its clients (after the environment changed, e.g. between tests)."""
    global _session
    with _lock:
        _session = None
        _clients.clear()
        _own_account.clear()
