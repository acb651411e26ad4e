"""The service's configuration: one frozen object built once from the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import __version__

DEFAULT_QUEUE_NAME = "minion-runs"
DEFAULT_TICK_PARTS_QUEUE_NAME = "minion-tick-parts"


class SettingsError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}: expected {low}..{high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first when unset), else SettingsError naming the variable."""
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def _role_arns(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IAM role ARNs, each in full: a wildcard would let the worker be
    pointed at any account's role (the confused deputy)."""
    from .accounts import ROLE_ARN

    arns = tuple(a.strip() for a in env.get(name, "").split(",") if a.strip())
    for arn in arns:
        if not ROLE_ARN.fullmatch(arn):
            raise SettingsError(f"{name}: {arn!r} is not a role ARN (no wildcards)")
    return arns


def _build_info() -> dict[str, str]:
    """What `make package` baked in (version, git hash, build time), if anything."""
    path = Path(__file__).with_name("build_info.json")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    # Written by infra/package.sh as an object; anything else is not build information.
    return info if isinstance(info, dict) else {}


@dataclass(frozen=True)
class Settings:
    """Everything the functions read from their environment."""

    table_name: str
    queue_name: str
    queue_url: str | None
    dead_letter_queue_name: str
    dead_letter_queue_url: str | None
    shards: int
    tick_parallelism: int
    tick_parts: int
    tick_parts_queue_name: str
    tick_parts_queue_url: str | None
    # MINION_TOKENS as given: parsed (and refused when misshapen) by chalicelib.auth, so a
    # mistake there locks clients out with an error logged instead of failing every route.
    tokens_text: str
    tokens_secret_id: str | None
    bcrypt_tokens: bool
    accounts_document: str | None
    accounts_file: str | None
    accounts_parameter: str | None
    runner_role_arns: tuple[str, ...]
    run_retention_days: int
    runner_timeout_seconds: int
    worker_timeout_seconds: int
    worker_concurrency: int
    dummy_template: str
    response_shape: str
    version: str
    githash: str
    buildstamp: str
    # Run events (chalicelib/events.py) and the chat reporter (chalicelib/reporter.py).
    event_bus: str = "default"
    notify_default: str | None = None
    api_url: str = ""
    webhook_secret_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build the settings, failing fast with the name of a malformed variable."""
        env = os.environ if env is None else env
        build = _build_info()
        queue_name = env.get("MINION_QUEUE_NAME", DEFAULT_QUEUE_NAME)
        return cls(
            table_name=env.get("MINION_TABLE", "minion"),
            queue_name=queue_name,
            queue_url=env.get("MINION_QUEUE_URL") or None,
            dead_letter_queue_name=env.get("MINION_DEAD_LETTER_QUEUE_NAME") or queue_name + "-dlq",
            dead_letter_queue_url=env.get("MINION_DEAD_LETTER_QUEUE_URL") or None,
            shards=_int(env, "MINION_SHARDS", 16, 1, 1000),
            tick_parallelism=_int(env, "MINION_TICK_PARALLELISM", 8, 1, 64),
            tick_parts=_int(env, "MINION_TICK_PARTS", 4, 1, 1000),
            tick_parts_queue_name=env.get(
                "MINION_TICK_PARTS_QUEUE_NAME", DEFAULT_TICK_PARTS_QUEUE_NAME
            ),
            tick_parts_queue_url=env.get("MINION_TICK_PARTS_QUEUE_URL") or None,
            tokens_text=env.get("MINION_TOKENS", "").strip(),
            tokens_secret_id=env.get("MINION_TOKENS_SECRET_ID") or None,
            # compat: minion's Go clients send a bcrypt hash of the token; on unless turned off.
            bcrypt_tokens=_bool(env, "MINION_BCRYPT_TOKENS", True),
            accounts_document=env.get("MINION_ACCOUNTS") or None,
            accounts_file=env.get("MINION_ACCOUNTS_FILE") or None,
            accounts_parameter=env.get("MINION_ACCOUNTS_PARAMETER") or None,
            runner_role_arns=_role_arns(env, "MINION_RUNNER_ROLE_ARNS"),
            run_retention_days=_int(env, "MINION_RUN_RETENTION_DAYS", 30, 1, 3650),
            runner_timeout_seconds=_int(env, "MINION_RUNNER_TIMEOUT", 60, 1, 840),
            worker_timeout_seconds=_int(env, "MINION_WORKER_TIMEOUT", 120, 3, 900),
            # Runs of one batch at once: they wait on AWS APIs, not on the CPU. The event
            # source hands over at most 10 records (app.py), so a whole batch runs together.
            worker_concurrency=_int(env, "MINION_WORKER_CONCURRENCY", 10, 1, 100),
            dummy_template=env.get("MINION_DUMMY_TEMPLATE", "Hello, {{.Account}}!"),
            response_shape=_choice(env, "MINION_RESPONSE_SHAPE", ("flat", "wrapped")),
            version=build.get("version") or env.get("MINION_VERSION", __version__),
            githash=build.get("githash") or env.get("MINION_GITHASH", "unknown"),
            buildstamp=build.get("buildstamp") or env.get("MINION_BUILDSTAMP", "unknown"),
            event_bus=env.get("MINION_EVENT_BUS") or "default",
            notify_default=env.get("MINION_NOTIFY_DEFAULT") or None,
            api_url=(env.get("MINION_API_URL") or "").rstrip("/"),
            webhook_secret_id=env.get("MINION_WEBHOOK_SECRET_ID") or None,
        )

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens of `MINION_TOKENS` (none when it is empty or misshapen)."""
        from .auth import TokenConfigError, parse_tokens

        if not self.tokens_text:
            return ()
        try:
            return tuple(grant.token for grant in parse_tokens(self.tokens_text))
        except TokenConfigError:
            return ()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use."""
    return Settings.from_env()
