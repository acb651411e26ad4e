"""taskRunner: runs a one-off ECS task (RunTask, startedBy=minion) and reports its ARNs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .base import (
    DetailsError,
    PermanentError,
    RetryableError,
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
from .service import CLUSTER, cluster_name

STARTED_BY = "minion"
LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL")
TASK_DEFINITION = re.compile(r"[A-Za-z0-9_-]{1,255}(?::[1-9][0-9]{0,9})?")
SUBNETS = re.compile(r"subnet-[0-9a-f]{8,17}(?:,subnet-[0-9a-f]{8,17}){0,15}")
SECURITY_GROUPS = re.compile(r"sg-[0-9a-f]{8,17}(?:,sg-[0-9a-f]{8,17}){0,4}")
PUBLIC_IP = {"true": "ENABLED", "false": "DISABLED", "ENABLED": "ENABLED", "DISABLED": "DISABLED"}
# RunTask failure reasons that capacity coming back can cure; others (MISSING, ATTRIBUTE, ...)
# fail the same way again.
CAPACITY_REASONS = ("RESOURCE:", "AGENT", "Capacity is unavailable")


class TaskRunner:
    """Starts `count` tasks of a task definition in a cluster."""

    name = "taskRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = ("ecs:RunTask", "iam:PassRole")

    def validate(self, details: Mapping[str, str]) -> None:
        """Require action `run`, cluster, task definition and count 1-10; check networking."""
        check_keys(
            details,
            self.name,
            ("task_action", "task_cluster", "task_name", "count"),
            ("launch_type", "subnets", "security_groups", "assign_public_ip"),
        )
        check_choice(details, "task_action", ("run",))
        check_pattern(
            details,
            "task_cluster",
            CLUSTER,
            "must be a cluster name (letters, digits, - and _, at most 255) or ARN",
        )
        check_pattern(
            details,
            "task_name",
            TASK_DEFINITION,
            "must be a task definition family, optionally with :revision",
        )
        parse_int(details, "count", minimum=1, maximum=10)
        if "launch_type" in details:
            check_choice(details, "launch_type", LAUNCH_TYPES)
        if "subnets" in details:
            check_pattern(
                details,
                "subnets",
                SUBNETS,
                "must be 1 to 16 comma-separated subnet ids (subnet-<hex>), no spaces",
            )
        elif details.get("launch_type", "FARGATE") == "FARGATE":
            raise DetailsError("subnets", "required for launch_type FARGATE (awsvpc networking)")
        for key in ("security_groups", "assign_public_ip"):
            if key in details and "subnets" not in details:
                raise DetailsError(key, "only together with subnets")
        if "security_groups" in details:
            check_pattern(
                details,
                "security_groups",
                SECURITY_GROUPS,
                "must be 1 to 5 comma-separated security group ids (sg-<hex>), no spaces",
            )
        if "assign_public_ip" in details:
            check_choice(details, "assign_public_ip", tuple(PUBLIC_IP))

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """RunTask of this task definition in this cluster; its roles passed to ECS tasks only
        (which roles: the runner role's policy lists them)."""
        family, _, revision = details["task_name"].partition(":")
        cluster = scope.arn("ecs", f"cluster/{cluster_name(details['task_cluster'])}")
        run = statement(
            ["ecs:RunTask"], scope.arn("ecs", f"task-definition/{family}:{revision or '*'}")
        )
        run["Condition"] = {"ArnEquals": {"ecs:cluster": cluster}}
        pass_role = statement(["iam:PassRole"], scope.arn("iam", "role/*", region=False))
        pass_role["Condition"] = {
            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
        }
        return [run, pass_role]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Call RunTask once; any failure entry fails the run."""
        revalidate(self, details)
        cluster, task_name = details["task_cluster"], details["task_name"]
        request: dict[str, Any] = {
            "cluster": cluster,
            "taskDefinition": task_name,
            "count": int(details["count"]),
            "startedBy": STARTED_BY,
            "launchType": details.get("launch_type", "FARGATE"),
            # A retried attempt of the same run gets the tasks of the first, not new ones.
            "clientToken": _client_token(ctx),
        }
        if "subnets" in details:
            network: dict[str, Any] = {"subnets": details["subnets"].split(",")}
            if "security_groups" in details:
                network["securityGroups"] = details["security_groups"].split(",")
            if "assign_public_ip" in details:
                network["assignPublicIp"] = PUBLIC_IP[details["assign_public_ip"]]
            request["networkConfiguration"] = {"awsvpcConfiguration": network}
        with aws_call(f"ecs RunTask {task_name} in {cluster}"):
            answer = ctx.client("ecs").run_task(**request)
        task_arns = [task["taskArn"] for task in answer.get("tasks", [])]
        failures = answer.get("failures", [])
        if failures:
            raise _failure(task_name, failures, task_arns)
        return RunResult(
            output=f"task {task_name} in {cluster}: started {len(task_arns)}: "
            + ", ".join(task_arns),
            data={"cluster": cluster, "task_definition": task_name, "task_arns": task_arns},
        )


def _client_token(ctx: RunContext) -> str:
    """RunTask's idempotency token for this run: 64 characters, the same on every attempt."""
    seed = f"{ctx.account}\n{ctx.job_id}\n{ctx.run_id}".encode()
    return hashlib.sha256(seed).hexdigest()


def _failure(
    task_name: str, failures: list[dict[str, Any]], task_arns: list[str]
) -> PermanentError | RetryableError:
    reasons = "; ".join(
        f"{f.get('arn', task_name)}: {f.get('reason', '?')}"
        + (f" ({f['detail']})" if f.get("detail") else "")
        for f in failures
    )
    code = str(failures[0].get("reason", "")) or None
    if task_arns:
        # Some tasks did start: another attempt would start them again.
        return PermanentError(
            f"ecs RunTask {task_name}: started {', '.join(task_arns)} but not all: {reasons}", code
        )
    capacity = all(str(f.get("reason", "")).startswith(CAPACITY_REASONS) for f in failures)
    error = RetryableError if capacity else PermanentError
    return error(f"ecs RunTask {task_name}: no task started: {reasons}", code)
