"""The process's shared parts, built lazily from the settings: the one composition root.

Every handler's objects are built here (the API's MinionApi, the Ticker, the Worker with its
runner registry and clock, the Sweeper, the event publisher); the use-case modules take them
as arguments and never read the settings themselves.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from . import aws
from .accounts import Registry, RegistryError, load_registry_document
from .auth import TokenAuthenticator
from .observability import emit, logger
from .queue import RunQueue, TickPartQueue
from .settings import get_settings
from .store import Store

if TYPE_CHECKING:  # built lazily: the API's cold start never imports the worker's modules
    from .accounts import AccountEntry
    from .api import MinionApi
    from .events import EventPublisher
    from .sweep import Sweeper
    from .tick import Ticker
    from .worker import Worker

REGISTRY_MAX_AGE = 300.0
_registry_cache: tuple[float, Registry] | None = None


@lru_cache(maxsize=1)
def store() -> Store:
    """The job store."""
    settings = get_settings()
    return Store(
        aws.client("dynamodb"), settings.table_name, settings.shards, settings.run_retention_days
    )


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
    return TickPartQueue(
        aws.client("sqs"), settings.tick_parts_queue_name, settings.tick_parts_queue_url
    )


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
                settings.accounts_document,
                settings.accounts_file,
                settings.accounts_parameter,
                settings.runner_role_arns,
            )
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

    logger.error(
        "API tokens refused: no token is valid until they are fixed",
        extra={"reason": problem, "error_code": "TokensConfigInvalid"},
    )
    emit_now("TokensConfigInvalid", 1)  # the alarm "API tokens invalid" watches it


@lru_cache(maxsize=1)
def authenticator() -> TokenAuthenticator:
    """The token checker."""
    return TokenAuthenticator(
        _tokens_text, bcrypt_enabled=get_settings().bcrypt_tokens, on_invalid=_tokens_invalid
    )


def page_key() -> bytes:
    """The key of the listings' `next_token` HMAC: derived from the API tokens (a secret
    every instance of the deployment shares); rotating them ends old page tokens too."""
    return hashlib.sha256(b"minion page tokens\0" + _tokens_text().encode("utf-8")).digest()


@lru_cache(maxsize=1)
def api() -> MinionApi:
    """The API's use cases (one per process: the routes share it)."""
    from .api import MinionApi

    return MinionApi(store(), run_queue(), registry, page_key=page_key)


def events() -> EventPublisher:
    """A run-events publisher (its client is created on the first PutEvents); one per
    handler invocation, as it collects the events it publishes at the end."""
    from .events import DEFAULT_NOTIFY, EventPublisher, NotifyConfigError, parse_notify_default

    settings = get_settings()
    try:
        default_notify = parse_notify_default(settings.notify_default)
    except NotifyConfigError as error:
        # Events are best effort: a misspelt default must not stop runs from being recorded.
        logger.error(
            "notify default refused; publishing the built-in default",
            extra={"reason": str(error), "default": list(DEFAULT_NOTIFY)},
        )
        default_notify = DEFAULT_NOTIFY
    return EventPublisher(
        aws.LazyClient("events"),
        bus=settings.event_bus,
        default_notify=default_notify,
        api_url=settings.api_url,
    )


def tick_fan_out() -> tuple[TickPartQueue, int, int]:
    """What the scheduled tick fans out to: the parts queue, the shards and the parts."""
    settings = get_settings()
    return tick_part_queue(), settings.shards, settings.tick_parts


def ticker() -> Ticker:
    """The tick part's processor."""
    from .tick import Ticker

    settings = get_settings()
    return Ticker(store(), run_queue(), settings.shards, settings.tick_parallelism, events=events())


def worker() -> Worker:
    """The runs worker, with the runner registry, the clock and how to act in accounts."""
    from .credentials import client_factory
    from .runners import get_runner
    from .worker import Worker

    settings = get_settings()
    region = aws.region()

    def clients(entry: AccountEntry, run_id: str) -> Callable[[str], Any]:
        return client_factory(entry, run_id, default_region=entry.region or region)

    return Worker(
        store=store(),
        queue=run_queue(),
        registry=registry,
        clients=clients,
        runner_timeout=settings.runner_timeout_seconds,
        invocation_timeout=settings.worker_timeout_seconds,
        dummy_template=settings.dummy_template,
        events=events(),
        concurrency=settings.worker_concurrency,
        runners=get_runner,
        clock=lambda: datetime.now(UTC),
    )


def sweeper() -> Sweeper:
    """The sweep of dead letters and expired leases."""
    from .sweep import Sweeper

    settings = get_settings()
    dead_letters = RunQueue(
        aws.LazyClient("sqs"), settings.dead_letter_queue_name, settings.dead_letter_queue_url
    )
    return Sweeper(store=store(), queue=run_queue(), dead_letters=dead_letters, events=events())


def reset() -> None:
    """Forget every built part (after the environment changed, e.g. between tests)."""
    global _registry_cache
    _registry_cache = None
    for part in (store, run_queue, tick_part_queue, authenticator, api, get_settings):
        part.cache_clear()
    aws.reset_clients()
