"""Structured logs (Powertools Logger) and CloudWatch EMF metrics (Powertools Metrics)."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger

NAMESPACE = "Minion"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "minion"))


@lru_cache(maxsize=1)
def _metrics() -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
                   service="minion")


def metrics() -> Any:
    """The EMF metrics collector, created on first use (the API never pays for it)."""
    return _metrics()


def emit(name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
    """Emit one metric at once, in its own EMF document (with optional dimensions)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    collector = metrics()
    if dimensions:
        with single_metric(name=name, unit=getattr(MetricUnit, unit), value=value,
                           namespace=collector.namespace) as metric:
            for key, dimension in dimensions.items():
                metric.add_dimension(name=key, value=dimension)
    else:
        collector.add_metric(name=name, unit=getattr(MetricUnit, unit), value=value)


def flush() -> None:
    """Write the collected metrics (the end of an invocation), if any were collected."""
    collector = metrics()
    if collector.metric_set:
        collector.flush_metrics()
