"""What every runner is: validation of its details, and a run that returns a result or raises."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

INTEGER = re.compile(r"^[+-]?\d+$")


class DetailsError(ValueError):
    """A job's details break a runner's rule; the message names the key."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"details.{key}: {rule}")
        self.key = key
        self.rule = rule


class RunnerError(Exception):
    """A run failed; `retryable` says whether another attempt may succeed."""

    retryable = False

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PermanentError(RunnerError):
    """A failure another attempt cannot fix (bad details, missing resource, access denied)."""


class RetryableError(RunnerError):
    """A failure another attempt may fix (throttling, 5xx, a resource between states)."""

    retryable = True


@dataclass(frozen=True)
class RunResult:
    """What a run did: a short human output and structured facts for the run record."""

    output: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Where and for whom a run acts.

    `client(service)` returns a boto3 client acting in the job's account and region
    (credentials already assumed when the registry names a role).
    """

    account: str
    run_id: str
    job_id: str
    client: Callable[[str], Any]
    dummy_template: str = "Hello, {{.Account}}!"


class Runner(Protocol):
    """A runner: one module under chalicelib/runners and one line in the registry."""

    name: str

    def validate(self, details: Mapping[str, str]) -> None:
        """Raise DetailsError naming the first bad key; `details` includes `runner`."""

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Act; raise PermanentError or RetryableError on failure."""
