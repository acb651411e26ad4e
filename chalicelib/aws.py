"""boto3 clients of the service's own account: created lazily, cached, with standard retries."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

# Standard mode retries throttling and transient errors with backoff; the budget is small
# so that an API request fails fast (503) instead of hanging when DynamoDB throttles hard.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4},
                       connect_timeout=3, read_timeout=10, max_pool_connections=32)


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    """A cached client for `service` in the function's own account and region."""
    return boto3.session.Session().client(service, config=CLIENT_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (after the environment changed, e.g. between tests)."""
    client.cache_clear()
