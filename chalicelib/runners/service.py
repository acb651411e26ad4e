"""serviceRunner: scales an ECS service, or stops it and later restores its desired count."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import (
    INTEGER,
    DetailsError,
    PermanentError,
    RunContext,
    RunResult,
    Scope,
    aws_call,
    check_choice,
    check_keys,
    check_pattern,
    parse_int,
    revalidate,
    statement,
)

# The previous desired count lives on the service itself, in the target account, so that a
# `start` finds it whichever minion deployment or run stopped the service.
PREVIOUS_COUNT_TAG = "minion:previous-desired-count"
DEFAULT_START_COUNT = 1
MAX_DESIRED_COUNT = 10_000
ACTIONS = ("scale", "stop", "start")
_ARN = r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:"
CLUSTER = re.compile(rf"(?:{_ARN}cluster/)?[A-Za-z0-9_-]{{1,255}}")
SERVICE = re.compile(rf"(?:{_ARN}service/(?:[A-Za-z0-9_-]{{1,255}}/)?)?[A-Za-z0-9_-]{{1,255}}")


class ServiceRunner:
    """Sets an ECS service's desired count: `scale` to a number, `stop` to 0, `start` back."""

    name = "serviceRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = (
        "ecs:DescribeServices",
        "ecs:UpdateService",
        "ecs:TagResource",
        "ecs:ListTagsForResource",
    )

    def validate(self, details: Mapping[str, str]) -> None:
        """Require action, cluster and name; `desired_count` with `scale` and only then."""
        check_keys(
            details,
            self.name,
            ("service_action", "service_cluster", "service_name"),
            ("desired_count",),
        )
        action = check_choice(details, "service_action", ACTIONS)
        check_pattern(
            details,
            "service_cluster",
            CLUSTER,
            "must be a cluster name (letters, digits, - and _, at most 255) or ARN",
        )
        check_pattern(
            details,
            "service_name",
            SERVICE,
            "must be a service name (letters, digits, - and _, at most 255) or ARN",
        )
        if action == "scale":
            if "desired_count" not in details:
                raise DetailsError("desired_count", "required when service_action is scale")
            parse_int(details, "desired_count", minimum=0, maximum=MAX_DESIRED_COUNT)
        elif "desired_count" in details:
            raise DetailsError("desired_count", "only with service_action scale")

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """This service only: read it, remember its count in its tag, update it."""
        return [
            statement(
                [
                    "ecs:DescribeServices",
                    "ecs:UpdateService",
                    "ecs:TagResource",
                    "ecs:ListTagsForResource",
                ],
                service_arns(details["service_cluster"], details["service_name"], scope),
            )
        ]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Read the service's desired count, then update it unless it already is the target."""
        revalidate(self, details)
        action = details["service_action"]
        cluster, service_name = details["service_cluster"], details["service_name"]
        ecs = ctx.client("ecs")
        service = _describe(ecs, cluster, service_name)
        previous = int(service["desiredCount"])
        if action == "scale":
            target = int(details["desired_count"])
        elif action == "stop":
            target = 0
        else:
            # A running service keeps its count rather than reverting someone's scaling.
            target = previous or _remembered_count(service)
        if target == previous:
            return _result(details, previous, previous, changed=False)
        if action == "stop":
            # Remember before scaling down: if the update then fails, nothing is lost.
            with aws_call(f"ecs TagResource {service_name}"):
                ecs.tag_resource(
                    resourceArn=service["serviceArn"],
                    tags=[{"key": PREVIOUS_COUNT_TAG, "value": str(previous)}],
                )
        with aws_call(f"ecs UpdateService {service_name}"):
            updated = ecs.update_service(
                cluster=cluster, service=service_name, desiredCount=target
            )["service"]
        return _result(details, previous, int(updated["desiredCount"]), changed=True)


def _describe(ecs: Any, cluster: str, service_name: str) -> dict[str, Any]:
    """The service, with its tags; PermanentError when missing or no longer active."""
    with aws_call(f"ecs DescribeServices {service_name}"):
        answer = ecs.describe_services(cluster=cluster, services=[service_name], include=["TAGS"])
    services = answer.get("services", [])
    if not services:
        reasons = ", ".join(f.get("reason", "?") for f in answer.get("failures", []))
        raise PermanentError(
            f"ecs: no service {service_name} in cluster {cluster} ({reasons or 'not returned'})",
            "ServiceNotFoundException",
        )
    service: dict[str, Any] = services[0]
    if service.get("status") != "ACTIVE":
        raise PermanentError(
            f"ecs: service {service_name} is {service.get('status')}", "ServiceNotActiveException"
        )
    return service


def _remembered_count(service: Mapping[str, Any]) -> int:
    """The desired count saved by the last `stop`, or the default when none is usable."""
    for tag in service.get("tags", []):
        value = str(tag.get("value", ""))
        if tag.get("key") == PREVIOUS_COUNT_TAG and INTEGER.fullmatch(value) and value.isascii():
            if 0 < int(value) <= MAX_DESIRED_COUNT:
                return int(value)
    return DEFAULT_START_COUNT


def _result(details: Mapping[str, str], previous: int, new: int, *, changed: bool) -> RunResult:
    action, name = details["service_action"], details["service_name"]
    if changed:
        output = f"service {name}: {action}: desired count {previous} -> {new}"
    else:
        output = f"service {name}: desired count already {previous}, {action} not needed"
    return RunResult(
        output=output,
        data={
            "cluster": details["service_cluster"],
            "service": name,
            "action": action,
            "previous_desired_count": previous,
            "new_desired_count": new,
            "changed": changed,
        },
    )


def cluster_name(cluster: str) -> str:
    """A cluster's name, from its name or ARN."""
    return cluster.rsplit("/", 1)[-1] if cluster.startswith("arn:") else cluster


def service_arns(cluster: str, service: str, scope: Scope) -> list[str]:
    """The ARNs a service may have: `service/<cluster>/<name>`, or the ARN given (which may
    be of the old format, `service/<name>`)."""
    if service.startswith("arn:"):
        return [service]
    return [scope.arn("ecs", f"service/{cluster_name(cluster)}/{service}")]
