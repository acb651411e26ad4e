"""instanceRunner: starts, stops, reboots or hibernates one EC2 instance."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws import error_code
from .base import (
    PermanentError,
    RetryableError,
    RunContext,
    RunResult,
    Scope,
    aws_call,
    check_choice,
    check_keys,
    check_pattern,
    classify,
    revalidate,
    statement,
)

# AWS issues 8 or 17 hex digits; 16 is accepted too because minion's own README example
# (i-aaaabbbb11112222) has 16, and existing jobs carry it.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{16,17})")
ACTIONS = ("start", "stop", "reboot", "hibernate")
BETWEEN_STATES = frozenset({"pending", "stopping"})
GONE = frozenset({"shutting-down", "terminated"})
# States that already are, or are on their way to, what the action asks for.
ALREADY = {
    "start": frozenset({"running", "pending"}),
    "stop": frozenset({"stopped", "stopping"}),
    "hibernate": frozenset({"stopped", "stopping"}),
    "reboot": frozenset(),
}


class InstanceRunner:
    """Acts on one EC2 instance; an instance already in the wanted state is a success."""

    name = "instanceRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = (
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:RebootInstances",
        "ec2:DescribeInstances",
        "kms:CreateGrant",
    )

    def validate(self, details: Mapping[str, str]) -> None:
        """Require `instance_id` (i- and 8, 16 or 17 hex digits) and `instance_action`."""
        check_keys(details, self.name, ("instance_id", "instance_action"))
        check_pattern(
            details,
            "instance_id",
            INSTANCE_ID,
            "must be i- followed by 8 or 17 lowercase hexadecimal digits (or 16)",
        )
        check_choice(details, "instance_action", ACTIONS)

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """State changes of this instance only (DescribeInstances has no resource level), and
        the KMS grant EC2 makes to start an instance with volumes under a customer key."""
        instance = scope.arn("ec2", f"instance/{details['instance_id']}")
        grant = statement(["kms:CreateGrant"], scope.arn("kms", "key/*"))
        grant["Condition"] = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
        return [
            statement(["ec2:StartInstances", "ec2:StopInstances", "ec2:RebootInstances"], instance),
            statement(["ec2:DescribeInstances"], "*"),
            grant,
        ]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Describe the instance, then act unless it is already where the action leads."""
        revalidate(self, details)
        instance_id, action = details["instance_id"], details["instance_action"]
        ec2 = ctx.client("ec2")
        with aws_call(f"ec2 DescribeInstances {instance_id}"):
            previous = _state(ec2, instance_id)
        if previous in GONE:
            raise PermanentError(
                f"instance {instance_id} is {previous}: cannot {action} it",
                "IncorrectInstanceState",
            )
        if previous in ALREADY[action]:
            return _result(instance_id, action, previous, previous, changed=False)
        if action == "reboot" and previous != "running":
            error = RetryableError if previous in BETWEEN_STATES else PermanentError
            raise error(
                f"instance {instance_id} is {previous}: only a running instance reboots",
                "IncorrectInstanceState",
            )
        try:
            new = _act(ec2, instance_id, action)
        except (ClientError, BotoCoreError) as error:
            # EC2 refuses a state change while the instance is pending or stopping; that passes.
            between = (
                error_code(error) == "IncorrectInstanceState"
                and _state_or_none(ec2, instance_id) in BETWEEN_STATES
            )
            raise classify(error, f"ec2 {action} {instance_id}", between_states=between) from error
        return _result(instance_id, action, previous, new, changed=True)


def _state(ec2: Any, instance_id: str) -> str:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise PermanentError(f"instance {instance_id} not found", "InvalidInstanceID.NotFound")
    return str(instances[0]["State"]["Name"])


def _state_or_none(ec2: Any, instance_id: str) -> str | None:
    try:
        return _state(ec2, instance_id)
    except (ClientError, BotoCoreError, PermanentError):
        return None


def _act(ec2: Any, instance_id: str, action: str) -> str:
    """Call EC2 for `action`; the instance's state right after the call."""
    if action == "start":
        changes = ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"]
    elif action == "reboot":
        ec2.reboot_instances(InstanceIds=[instance_id])
        return "running"  # a reboot does not leave the running state
    else:
        changes = ec2.stop_instances(InstanceIds=[instance_id], Hibernate=action == "hibernate")[
            "StoppingInstances"
        ]
    return str(changes[0]["CurrentState"]["Name"])


def _result(instance_id: str, action: str, previous: str, new: str, *, changed: bool) -> RunResult:
    if changed:
        output = f"instance {instance_id}: {action}: {previous} -> {new}"
    else:
        output = f"instance {instance_id}: already {previous}, {action} not needed"
    return RunResult(
        output=output,
        data={
            "instance_id": instance_id,
            "action": action,
            "previous_state": previous,
            "new_state": new,
            "changed": changed,
        },
    )
