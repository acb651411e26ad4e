"""Structured logs (Powertools Logger) and CloudWatch EMF metrics (Powertools Metrics)."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import boto3  # noqa: F401 - imported first: its loggers must exist to be pinned below
from aws_lambda_powertools import Logger

NAMESPACE = "Minion"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "minion"))

# At DEBUG, botocore logs request bodies and responses: an AssumeRole's ExternalId and the
# credentials it returns, and (botocore.auth) the session token it signs with. These loggers
# stay at INFO whatever the root level (AWS_LAMBDA_LOG_LEVEL, basicConfig): their level is
# pinned, and a filter drops their DEBUG records even if a level is lowered later.
PINNED_LOGGERS = (
    "boto3",
    "botocore",
    "botocore.auth",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.retryhandler",
    "botocore.utils",
    "s3transfer",
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
)


class _InfoOrAbove(logging.Filter):
    """Drops records below INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_INFO_OR_ABOVE = _InfoOrAbove()


def pin_aws_loggers() -> None:
    """Keep the AWS SDK's and urllib3's loggers (and their children so far) at INFO or above."""
    prefixes = tuple(name + "." for name in PINNED_LOGGERS)
    names = set(PINNED_LOGGERS) | {
        name for name in list(logging.root.manager.loggerDict) if name.startswith(prefixes)
    }
    for name in names:
        pinned = logging.getLogger(name)
        if pinned.level < logging.INFO:
            pinned.setLevel(logging.INFO)
        if _INFO_OR_ABOVE not in pinned.filters:
            pinned.addFilter(_INFO_OR_ABOVE)


pin_aws_loggers()


@lru_cache(maxsize=1)
def _metrics() -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service="minion"
    )


def metrics() -> Any:
    """The EMF metrics collector, created on first use (the API never pays for it)."""
    return _metrics()


def emit(
    name: str, value: float, unit: str = "Count", *, now: bool = False, **dimensions: str
) -> None:
    """Emit one metric: with dimensions or `now`, at once in its own EMF document (for a
    function that never flushes, like the API); else collected until `flush()`."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    collector = metrics()
    if dimensions or now:
        with single_metric(
            name=name, unit=getattr(MetricUnit, unit), value=value, namespace=collector.namespace
        ) as metric:
            for key, dimension in dimensions.items():
                metric.add_dimension(name=key, value=dimension)
    else:
        collector.add_metric(name=name, unit=getattr(MetricUnit, unit), value=value)


def emit_now(name: str, value: float, unit: str = "Count") -> None:
    """Publish one metric at once in its own EMF document, apart from the collector: safe from
    any thread (the local stack runs the API beside the tick), and for the API, which never
    flushes the collector."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    collector = metrics()
    with single_metric(
        name=name,
        unit=getattr(MetricUnit, unit),
        value=value,
        namespace=collector.namespace,
        default_dimensions={"service": collector.service or "minion"},
    ):
        pass


def flush() -> None:
    """Write the collected metrics (the end of an invocation), if any were collected."""
    collector = metrics()
    if collector.metric_set:
        collector.flush_metrics()
