"""The runner registry: adding a runner is one module and one line here."""

from __future__ import annotations

from .autoscaling import AutoscalingRunner
from .base import (
    DetailsError,
    PermanentError,
    RetryableError,
    RunContext,
    Runner,
    RunnerError,
    RunResult,
    Scope,
    check_scope,
    session_policy,
)
from .database import DatabaseRunner
from .dummy import DummyRunner
from .instance import InstanceRunner
from .lambda_ import LambdaRunner
from .service import ServiceRunner
from .task import TaskRunner

RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        DummyRunner(),
        InstanceRunner(),
        DatabaseRunner(),
        ServiceRunner(),
        TaskRunner(),
        AutoscalingRunner(),
        LambdaRunner(),
    )
}

__all__ = [
    "RUNNERS",
    "get_runner",
    "DetailsError",
    "PermanentError",
    "RetryableError",
    "RunContext",
    "Runner",
    "RunnerError",
    "RunResult",
    "Scope",
    "check_scope",
    "session_policy",
]


def get_runner(name: str) -> Runner | None:
    """The runner called `name`, or None when there is no such runner."""
    return RUNNERS.get(name)
