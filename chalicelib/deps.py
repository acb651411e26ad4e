"""The process's shared parts, built lazily from the settings (one place to wire them)."""
from __future__ import annotations

import hashlib
import time
from functools import lru_cache

from . import aws
from .accounts import Registry, RegistryError, load_registry_document
from .auth import TokenAuthenticator
from .observability import emit, logger
from .queue import RunQueue, TickPartQueue
from .settings import get_settings
from .store import Store

REGISTRY_MAX_AGE = 300.0
_registry_cache: tuple[float, Registry] | None = None


@lru_cache(maxsize=1)
def store() -> Store:
    """The job store."""
    settings = get_settings()
    return Store(aws.client("dynamodb"), settings.table_name, settings.shards,
                 settings.run_retention_days)


@lru_cache(maxsize=1)
def run_queue() -> RunQueue:
    """The runs queue (its client is created on the first send: a GET of the API, or a worker
    whose runs all succeed, never sends)."""
    settings = get_settings()
    return RunQueue(aws.LazyClient("sqs"), settings.queue_name, settings.queue_url)


@lru_cache(maxsize=1)
def tick_part_queue() -> TickPartQueue:
    """The tick parts queue (the scheduled tick's only output)."""
    settings = get_settings()
    return TickPartQueue(aws.client("sqs"), settings.tick_parts_queue_name,
                         settings.tick_parts_queue_url)


def registry() -> Registry:
    """The account registry (re-read at most every 5 minutes when it lives in SSM).

    An unusable registry raises RegistryError (a 503) each time it is asked for, logged at
    ERROR with a metric, and is not cached: the fix is picked up at the next request.
    """
    global _registry_cache
    now = time.monotonic()
    if _registry_cache is None or now - _registry_cache[0] > REGISTRY_MAX_AGE:
        settings = get_settings()
        try:
            loaded = load_registry_document(
                settings.accounts_document, settings.accounts_file,
                settings.accounts_parameter, settings.runner_role_arns)
        except RegistryError as error:
            logger.error("account registry refused", extra={"reason": str(error)})
            try:
                emit("RegistryErrors", 1, now=True)
            except Exception:
                logger.exception("metric not emitted", extra={"metric": "RegistryErrors"})
            raise
        _registry_cache = (now, loaded)
    return _registry_cache[1]


def _tokens_text() -> str:
    """The tokens as configured: the secret's text in AWS, `MINION_TOKENS` locally."""
    settings = get_settings()
    if settings.tokens_secret_id:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(settings.tokens_secret_id, max_age=300)
        # A binary secret is no documented shape: as text it is refused by the parser.
        return value if isinstance(value, str) else "<binary secret>"
    return settings.tokens_text


def _tokens_invalid(problem: str) -> None:
    """The configured tokens are misshapen: every request is refused until they are fixed."""
    from .observability import emit_now, logger

    logger.error("API tokens refused: no token is valid until they are fixed",
                 extra={"reason": problem, "error_code": "TokensConfigInvalid"})
    emit_now("TokensConfigInvalid", 1)  # the alarm "API tokens invalid" watches it


@lru_cache(maxsize=1)
def authenticator() -> TokenAuthenticator:
    """The token checker."""
    return TokenAuthenticator(_tokens_text, bcrypt_enabled=get_settings().bcrypt_tokens,
                              on_invalid=_tokens_invalid)


def page_key() -> bytes:
    """The key of the listings' `next_token` HMAC: derived from the API tokens (a secret
    every instance of the deployment shares); rotating them ends old page tokens too."""
    return hashlib.sha256(b"minion page tokens\0" + _tokens_text().encode("utf-8")).digest()


def reset() -> None:
    """Forget every built part (after the environment changed, e.g. between tests)."""
    global _registry_cache
    _registry_cache = None
    for part in (store, run_queue, tick_part_queue, authenticator, get_settings):
        part.cache_clear()
    aws.reset_clients()
