"""autoscalingRunner: validation, and size changes on moto's emulated Auto Scaling groups."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import DetailsError, PermanentError, RetryableError, RunnerError
from runner_support import REGION, context, fail_with, stubbed

RUNNER = RUNNERS["autoscalingRunner"]


def details(**sizes: str) -> dict[str, str]:
    return {"runner": "autoscalingRunner", "group_name": "workers", **sizes}


def autoscaling() -> Any:
    return boto3.client("autoscaling", region_name=REGION)


def workers(low: int = 1, desired: int = 2, high: int = 4) -> None:
    """An emulated Auto Scaling group `workers` with these sizes."""
    autoscaling().create_launch_configuration(
        LaunchConfigurationName="workers", ImageId="ami-12c6146b", InstanceType="t3.micro"
    )
    autoscaling().create_auto_scaling_group(
        AutoScalingGroupName="workers",
        LaunchConfigurationName="workers",
        MinSize=low,
        DesiredCapacity=desired,
        MaxSize=high,
        AvailabilityZones=[f"{REGION}a"],
    )


def sizes() -> tuple[int, int, int]:
    group = autoscaling().describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])[
        "AutoScalingGroups"
    ][0]
    return group["MinSize"], group["DesiredCapacity"], group["MaxSize"]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        details(desired_capacity="0"),
        details(min_size="0"),
        details(max_size="10"),
        details(min_size="1", desired_capacity="1", max_size="1"),
        details(min_size="0", max_size="3"),
        {**details(desired_capacity="0"), "group_name": "eks-nodes-2a/blue:v1"},
    ],
)
def test_valid_details_are_accepted(good: dict[str, str]) -> None:
    RUNNER.validate(good)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"runner": "autoscalingRunner", "desired_capacity": "1"}, "group_name"),
        (details(), "desired_capacity"),
        (details(min_size="3", max_size="2"), "min_size"),
        (details(min_size="2", desired_capacity="1"), "desired_capacity"),
        (details(max_size="2", desired_capacity="3"), "desired_capacity"),
        (details(desired_capacity="-1"), "desired_capacity"),
        (details(desired_capacity="1.5"), "desired_capacity"),
        (details(min_size="one"), "min_size"),
        (details(max_size=" 4"), "max_size"),
        ({**details(desired_capacity="1"), "group_name": ""}, "group_name"),
        ({**details(desired_capacity="1"), "group_name": " workers"}, "group_name"),
        ({**details(desired_capacity="1"), "group_name": "w" * 256}, "group_name"),
        ({**details(desired_capacity="1"), "group_name": "wörkers"}, "group_name"),
        ({**details(desired_capacity="1"), "capacity": "1"}, "capacity"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, str], key: str) -> None:
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key


# --- groups on emulated Auto Scaling -------------------------------------------------------


def test_scaling_to_zero_changes_the_group_and_reports_before_and_after(moto_aws: None) -> None:
    # Given a group at min 1, desired 2, max 4
    workers(1, 2, 4)
    # When set to min 0, desired 0
    result = RUNNER.run(details(min_size="0", desired_capacity="0"), context())
    # Then the group is at 0/0/4 and the result says so, untouched max included
    assert sizes() == (0, 0, 4)
    assert result.data["previous_state"] == {"min_size": 1, "desired_capacity": 2, "max_size": 4}
    assert result.data["new_state"] == {"min_size": 0, "desired_capacity": 0, "max_size": 4}
    assert "min 1, desired 2, max 4 -> min 0, desired 0, max 4" in result.output


def test_sizes_already_as_asked_succeed_without_change(moto_aws: None) -> None:
    workers(1, 2, 4)
    result = RUNNER.run(details(desired_capacity="2", max_size="4"), context())
    assert result.data["changed"] is False and sizes() == (1, 2, 4)


def test_desired_outside_the_groups_other_sizes_fails_permanently(moto_aws: None) -> None:
    # Given max 4 / When only desired 6 is asked (moto would accept it; AWS would not)
    workers(1, 2, 4)
    with pytest.raises(PermanentError, match="outside 1..4") as raised:
        RUNNER.run(details(desired_capacity="6"), context())
    assert raised.value.code == "ValidationError"
    assert sizes() == (1, 2, 4)


def test_missing_group_fails_permanently(moto_aws: None) -> None:
    with pytest.raises(PermanentError, match="no Auto Scaling group named workers") as raised:
        RUNNER.run(details(desired_capacity="0"), context())
    assert raised.value.code == "ValidationError"


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("Throttling", 400, RetryableError),
        ("AccessDenied", 403, PermanentError),
        ("InternalFailure", 500, RetryableError),
    ],
)
def test_describe_failure_is_classified(code: str, status: int, error: type[RunnerError]) -> None:
    ctx, stubber = stubbed("autoscaling")
    fail_with(stubber, "describe_auto_scaling_groups", code, status)
    with pytest.raises(error) as raised:
        RUNNER.run(details(desired_capacity="0"), ctx)
    assert type(raised.value) is error and raised.value.code == code


@pytest.mark.parametrize("code", ["ScalingActivityInProgress", "ResourceContention"])
def test_update_meeting_an_unfinished_activity_is_retryable(code: str) -> None:
    # Given a group at 1/2/4 whose update meets a scaling activity or update still going on
    ctx, stubber = stubbed("autoscaling")
    stubber.add_response(
        "describe_auto_scaling_groups",
        {
            "AutoScalingGroups": [
                {
                    "AutoScalingGroupName": "workers",
                    "MinSize": 1,
                    "MaxSize": 4,
                    "DesiredCapacity": 2,
                    "DefaultCooldown": 300,
                    "AvailabilityZones": [],
                    "HealthCheckType": "EC2",
                    "CreatedTime": "2024-01-01T00:00:00Z",
                }
            ]
        },
    )
    fail_with(stubber, "update_auto_scaling_group", code)
    # When scaled to 3 / Then retry later: the activity ends by itself
    with pytest.raises(RetryableError) as raised:
        RUNNER.run(details(desired_capacity="3"), ctx)
    assert raised.value.code == code
    stubber.assert_no_pending_responses()
