"""autoscalingRunner: sets an Auto Scaling group's minimum, maximum and/or desired capacity."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import (
    DetailsError,
    PermanentError,
    RunContext,
    RunResult,
    Scope,
    aws_call,
    check_keys,
    check_pattern,
    parse_int,
    revalidate,
    statement,
)

MAX_SIZE = 10_000
# Detail key -> UpdateAutoScalingGroup parameter (and DescribeAutoScalingGroups field).
SIZES = {"min_size": "MinSize", "max_size": "MaxSize", "desired_capacity": "DesiredCapacity"}
# Printable ASCII, no leading or trailing space, at most 255 characters.
GROUP_NAME = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


class AutoscalingRunner:
    """Updates the sizes of one Auto Scaling group; sizes not given are left alone."""

    name = "autoscalingRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = (
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
    )

    def validate(self, details: Mapping[str, str]) -> None:
        """Require `group_name` and at least one size; given sizes keep min <= desired <= max."""
        check_keys(details, self.name, ("group_name",), tuple(SIZES))
        check_pattern(
            details, "group_name", GROUP_NAME, "must be 1 to 255 printable ASCII characters"
        )
        sizes = _sizes(details)
        if not sizes:
            raise DetailsError(
                "desired_capacity", "give at least one of min_size, max_size, desired_capacity"
            )
        low, high = sizes.get("MinSize", 0), sizes.get("MaxSize", MAX_SIZE)
        if low > high:
            raise DetailsError("min_size", "must not exceed max_size")
        if "DesiredCapacity" in sizes and not low <= sizes["DesiredCapacity"] <= high:
            raise DetailsError("desired_capacity", "must lie between min_size and max_size")

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """Updates of this group only (DescribeAutoScalingGroups has no resource level)."""
        group = scope.arn(
            "autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{details['group_name']}"
        )
        return [
            statement(["autoscaling:UpdateAutoScalingGroup"], group),
            statement(["autoscaling:DescribeAutoScalingGroups"], "*"),
        ]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Read the group's sizes, update those that differ, and report before and after."""
        revalidate(self, details)
        group_name, wanted = details["group_name"], _sizes(details)
        autoscaling = ctx.client("autoscaling")
        previous = _describe(autoscaling, group_name)
        if all(previous[key] == value for key, value in wanted.items()):
            return _result(group_name, previous, previous, changed=False)
        _check_merged(group_name, previous, wanted)
        with aws_call(f"autoscaling UpdateAutoScalingGroup {group_name}"):
            autoscaling.update_auto_scaling_group(AutoScalingGroupName=group_name, **wanted)
        # Read back: AWS moves the desired capacity itself when a new min or max excludes it.
        return _result(group_name, previous, _describe(autoscaling, group_name), changed=True)


def _sizes(details: Mapping[str, str]) -> dict[str, int]:
    return {
        parameter: parse_int(details, key, minimum=0, maximum=MAX_SIZE)
        for key, parameter in SIZES.items()
        if key in details
    }


def _describe(autoscaling: Any, group_name: str) -> dict[str, int]:
    with aws_call(f"autoscaling DescribeAutoScalingGroups {group_name}"):
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])[
            "AutoScalingGroups"
        ]
    if not groups:
        # What UpdateAutoScalingGroup itself answers for an unknown group.
        raise PermanentError(
            f"autoscaling: no Auto Scaling group named {group_name}", "ValidationError"
        )
    return {parameter: int(groups[0][parameter]) for parameter in SIZES.values()}


def _check_merged(group_name: str, previous: Mapping[str, int], wanted: Mapping[str, int]) -> None:
    """Refuse an update that, combined with the sizes not given, breaks min <= desired <= max."""
    low = wanted.get("MinSize", previous["MinSize"])
    high = wanted.get("MaxSize", previous["MaxSize"])
    if low > high:
        raise PermanentError(
            f"autoscaling {group_name}: min size {low} would exceed max size {high}",
            "ValidationError",
        )
    desired = wanted.get("DesiredCapacity")
    if desired is not None and not low <= desired <= high:
        raise PermanentError(
            f"autoscaling {group_name}: desired capacity {desired} would lie outside {low}..{high}",
            "ValidationError",
        )


def _result(
    group_name: str, previous: Mapping[str, int], new: Mapping[str, int], *, changed: bool
) -> RunResult:
    def sizes(values: Mapping[str, int]) -> str:
        return (
            f"min {values['MinSize']}, desired {values['DesiredCapacity']}, max {values['MaxSize']}"
        )

    if changed:
        output = f"auto scaling group {group_name}: {sizes(previous)} -> {sizes(new)}"
    else:
        output = f"auto scaling group {group_name}: already {sizes(previous)}"
    keys = {parameter: key for key, parameter in SIZES.items()}
    return RunResult(
        output=output,
        data={
            "group_name": group_name,
            "changed": changed,
            "previous_state": {keys[p]: v for p, v in previous.items()},
            "new_state": {keys[p]: v for p, v in new.items()},
        },
    )
