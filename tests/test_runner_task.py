"""taskRunner: validation, the RunTask request, and tasks started on moto's emulated ECS."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import (
    DetailsError,
    PermanentError,
    RetryableError,
    RunContext,
    RunnerError,
)
from runner_support import REGION, context, fail_with, stubbed

RUNNER = RUNNERS["taskRunner"]
SUBNET = "subnet-0123456789abcdef0"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/apps/0123456789abcdef0123456789abcdef"


def details(**changes: str | None) -> dict[str, str]:
    base = {
        "runner": "taskRunner",
        "task_action": "run",
        "task_cluster": "apps",
        "task_name": "nightly",
        "count": "1",
        "subnets": SUBNET,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def without(key: str) -> dict[str, str]:
    return {k: v for k, v in details().items() if k != key}


def fargate_setup() -> tuple[str, str]:
    """Cluster `apps`, awsvpc task definition `nightly`, and a subnet and security group in a
    VPC with DNS host names (moto needs both security groups and DNS names for awsvpc)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName="apps")
    ecs.register_task_definition(
        family="nightly",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "job", "image": "busybox", "memory": 128}],
    )
    return subnet, group


def expected_request(**changes: Any) -> dict[str, Any]:
    request = {
        "cluster": "apps",
        "taskDefinition": "nightly",
        "count": 1,
        "startedBy": "minion",
        "launchType": "FARGATE",
        "clientToken": ANY,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": [SUBNET]}},
    }
    return {k: v for k, v in {**request, **changes}.items() if v is not None}


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        details(),
        details(count="10", task_name="nightly:12"),
        details(
            subnets=f"{SUBNET},subnet-0a1b2c3d",
            security_groups="sg-0a1b2c3d",
            assign_public_ip="true",
        ),
        details(launch_type="EC2", subnets=None),
        details(launch_type="FARGATE"),
        details(task_cluster="arn:aws:ecs:us-east-1:123456789012:cluster/apps"),
    ],
)
def test_valid_details_are_accepted(good: dict[str, str]) -> None:
    RUNNER.validate(good)


@pytest.mark.parametrize(
    "bad, key",
    [
        (without("task_action"), "task_action"),
        (without("task_cluster"), "task_cluster"),
        (without("task_name"), "task_name"),
        (without("count"), "count"),
        (details(task_action="stop"), "task_action"),
        (details(count="0"), "count"),
        (details(count="11"), "count"),
        (details(count="1.0"), "count"),
        (details(count=" 1"), "count"),
        (details(count="one"), "count"),
        (details(task_name="nightly:0"), "task_name"),
        (details(task_name="nightly:latest"), "task_name"),
        (details(task_name="night ly"), "task_name"),
        (details(launch_type="fargate"), "launch_type"),
        (details(subnets=None), "subnets"),
        (details(subnets=f"{SUBNET}, subnet-0a1b2c3d"), "subnets"),
        (details(subnets="subnet-XYZ"), "subnets"),
        (details(subnets=",".join([SUBNET] * 17)), "subnets"),
        (details(security_groups="sg-1"), "security_groups"),
        (
            details(launch_type="EC2", subnets=None, security_groups="sg-0a1b2c3d"),
            "security_groups",
        ),
        (details(launch_type="EC2", subnets=None, assign_public_ip="true"), "assign_public_ip"),
        (details(assign_public_ip="yes"), "assign_public_ip"),
        ({**details(), "container": "job"}, "container"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, str], key: str) -> None:
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key


# --- tasks on emulated ECS -----------------------------------------------------------------


def test_run_starts_the_tasks_and_reports_their_arns(moto_aws: None) -> None:
    # Given a cluster and a Fargate task definition
    subnet, group = fargate_setup()
    # When two tasks are run
    result = RUNNER.run(details(count="2", subnets=subnet, security_groups=group), context())
    # Then ECS lists exactly those two, started by minion, on Fargate
    ecs = boto3.client("ecs", region_name=REGION)
    started = ecs.list_tasks(cluster="apps", startedBy="minion")["taskArns"]
    assert len(result.data["task_arns"]) == 2
    assert sorted(started) == sorted(result.data["task_arns"])
    tasks = ecs.describe_tasks(cluster="apps", tasks=started)["tasks"]
    assert {(t["launchType"], t["startedBy"]) for t in tasks} == {("FARGATE", "minion")}
    assert all(arn in result.output for arn in started)


def test_missing_task_definition_fails_permanently(moto_aws: None) -> None:
    subnet, group = fargate_setup()
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details(task_name="weekly", subnets=subnet, security_groups=group), context())
    assert raised.value.code == "ClientException"


def test_missing_cluster_fails_permanently_with_the_aws_code(moto_aws: None) -> None:
    subnet, group = fargate_setup()
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details(task_cluster="batch", subnets=subnet, security_groups=group), context())
    assert raised.value.code == "ClusterNotFoundException"


# --- the request, and RunTask's failures list (Stubber) ------------------------------------


def test_request_carries_networking_and_the_public_ip_choice() -> None:
    # Given RunTask expected with exactly these parameters
    ctx, stubber = stubbed("ecs")
    network = {
        "subnets": [SUBNET, "subnet-0a1b2c3d"],
        "securityGroups": ["sg-0a1b2c3d"],
        "assignPublicIp": "ENABLED",
    }
    stubber.add_response(
        "run_task",
        {"tasks": [{"taskArn": TASK_ARN}], "failures": []},
        expected_request(networkConfiguration={"awsvpcConfiguration": network}),
    )
    # When run / Then the Stubber saw them (it raises on any difference)
    RUNNER.run(
        details(
            subnets=f"{SUBNET},subnet-0a1b2c3d",
            security_groups="sg-0a1b2c3d",
            assign_public_ip="true",
        ),
        ctx,
    )
    stubber.assert_no_pending_responses()


def test_ec2_launch_type_without_subnets_sends_no_network_configuration() -> None:
    ctx, stubber = stubbed("ecs")
    stubber.add_response(
        "run_task",
        {"tasks": [{"taskArn": TASK_ARN}], "failures": []},
        expected_request(launchType="EC2", networkConfiguration=None),
    )
    RUNNER.run(details(launch_type="EC2", subnets=None), ctx)
    stubber.assert_no_pending_responses()


def test_client_token_is_the_same_for_every_attempt_of_a_run_and_differs_between_runs() -> None:
    # Given three attempts: two of run-1 and one of run-2
    tokens: list[str] = []
    for run_id in ("run-1", "run-1", "run-2"):
        ctx, stubber = stubbed("ecs")
        ctx.client("ecs").meta.events.register(
            "provide-client-params.ecs.RunTask",
            lambda params, **_: tokens.append(params["clientToken"]),
        )
        stubber.add_response("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []})
        RUNNER.run(
            details(), RunContext(account="team", run_id=run_id, job_id="job-1", client=ctx.client)
        )
    # Then ECS can recognise a retried attempt, and tokens fit its 64-character limit
    assert tokens[0] == tokens[1] != tokens[2]
    assert all(len(t) <= 64 for t in tokens)


@pytest.mark.parametrize(
    "reasons, error",
    [
        (["RESOURCE:MEMORY"], RetryableError),
        (
            [
                "Capacity is unavailable at this time. Please try again later or in a different "
                "availability zone"
            ],
            RetryableError,
        ),
        (["MISSING"], PermanentError),
        (["RESOURCE:CPU", "ATTRIBUTE"], PermanentError),
    ],
)
def test_no_task_started_is_retryable_only_for_missing_capacity(
    reasons: list[str], error: type[RunnerError]
) -> None:
    # Given RunTask answering 200 with failures and no task
    ctx, stubber = stubbed("ecs")
    stubber.add_response(
        "run_task",
        {
            "tasks": [],
            "failures": [
                {"arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/x", "reason": r}
                for r in reasons
            ],
        },
    )
    # When run / Then the failure is raised, classified, with the first reason as its code
    with pytest.raises(error) as raised:
        RUNNER.run(details(), ctx)
    assert type(raised.value) is error and raised.value.code == reasons[0]
    assert "no task started" in str(raised.value)


def test_some_tasks_started_fails_permanently_naming_them() -> None:
    # Given RunTask starting one task of two: a retry would start that one again
    ctx, stubber = stubbed("ecs")
    stubber.add_response(
        "run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": [{"reason": "RESOURCE:MEMORY"}]}
    )
    with pytest.raises(PermanentError, match=TASK_ARN):
        RUNNER.run(details(count="2"), ctx)


@pytest.mark.parametrize(
    "code, error",
    [
        ("ThrottlingException", RetryableError),
        ("AccessDeniedException", PermanentError),
        ("ServerException", RetryableError),
    ],
)
def test_run_task_errors_are_classified(code: str, error: type[RunnerError]) -> None:
    ctx, stubber = stubbed("ecs")
    fail_with(stubber, "run_task", code, 500 if code == "ServerException" else 400)
    with pytest.raises(error) as raised:
        RUNNER.run(details(), ctx)
    assert type(raised.value) is error and raised.value.code == code
