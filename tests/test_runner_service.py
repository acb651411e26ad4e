"""serviceRunner: validation, and ECS desired-count changes on moto's emulated services."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import DetailsError, PermanentError, RetryableError, RunnerError
from chalicelib.runners.service import PREVIOUS_COUNT_TAG
from runner_support import REGION, context, fail_with, stubbed

RUNNER = RUNNERS["serviceRunner"]


def details(action: str = "stop", **extra: str) -> dict[str, str]:
    return {
        "runner": "serviceRunner",
        "service_action": action,
        "service_cluster": "apps",
        "service_name": "web",
        **extra,
    }


def ecs() -> Any:
    return boto3.client("ecs", region_name=REGION)


def web_service(desired: int, tags: dict[str, str] | None = None) -> str:
    """Cluster `apps` with service `web` at `desired` tasks; the service ARN."""
    ecs().create_cluster(clusterName="apps")
    ecs().register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
    )
    arn = ecs().create_service(
        cluster="apps", serviceName="web", taskDefinition="web", desiredCount=desired
    )["service"]["serviceArn"]
    if tags:
        ecs().tag_resource(resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()])
    return arn


def desired_count() -> int:
    return ecs().describe_services(cluster="apps", services=["web"])["services"][0]["desiredCount"]


def remembered(arn: str) -> str | None:
    tags = ecs().list_tags_for_resource(resourceArn=arn)["tags"]
    return next((t["value"] for t in tags if t["key"] == PREVIOUS_COUNT_TAG), None)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        details("scale", desired_count="0"),
        details("scale", desired_count="25"),
        details("stop"),
        details("start"),
        {
            **details("stop"),
            "service_cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/apps",
            "service_name": "arn:aws:ecs:us-east-1:123456789012:service/apps/web",
        },
    ],
)
def test_valid_details_are_accepted(good: dict[str, str]) -> None:
    RUNNER.validate(good)


@pytest.mark.parametrize(
    "bad, key",
    [
        (details("scale"), "desired_count"),
        (details("stop", desired_count="2"), "desired_count"),
        (details("scale", desired_count="-1"), "desired_count"),
        (details("scale", desired_count="2.0"), "desired_count"),
        (details("scale", desired_count=" 2"), "desired_count"),
        (details("scale", desired_count="two"), "desired_count"),
        (details("restart"), "service_action"),
        ({k: v for k, v in details().items() if k != "service_cluster"}, "service_cluster"),
        ({k: v for k, v in details().items() if k != "service_name"}, "service_name"),
        ({**details(), "service_cluster": "apps/prod"}, "service_cluster"),
        ({**details(), "service_name": "web service"}, "service_name"),
        ({**details(), "service_name": "w" * 256}, "service_name"),
        ({**details(), "count": "1"}, "count"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, str], key: str) -> None:
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key


def test_run_with_invalid_stored_details_fails_permanently() -> None:
    with pytest.raises(PermanentError, match="details.desired_count"):
        RUNNER.run(details("scale"), context(lambda s: pytest.fail("no AWS call")))


# --- scale, stop, start ----------------------------------------------------------------------


def test_scale_sets_the_desired_count(moto_aws: None) -> None:
    # Given a service at 2 / When scaled to 5 / Then ECS shows 5 and the output says 2 -> 5
    web_service(2)
    result = RUNNER.run(details("scale", desired_count="5"), context())
    assert desired_count() == 5
    assert (result.data["previous_desired_count"], result.data["new_desired_count"]) == (2, 5)
    assert "2 -> 5" in result.output


def test_scale_to_the_current_count_succeeds_without_change(moto_aws: None) -> None:
    web_service(3)
    result = RUNNER.run(details("scale", desired_count="3"), context())
    assert result.data["changed"] is False and desired_count() == 3


def test_stop_scales_to_zero_and_remembers_the_count_on_the_service(moto_aws: None) -> None:
    # Given a service at 4
    arn = web_service(4)
    # When stopped / Then 0 tasks are desired and the service carries the previous count
    result = RUNNER.run(details("stop"), context())
    assert desired_count() == 0
    assert remembered(arn) == "4"
    assert (result.data["previous_desired_count"], result.data["new_desired_count"]) == (4, 0)


def test_start_restores_the_count_remembered_by_stop(moto_aws: None) -> None:
    # Given a service at 4, stopped by the runner
    web_service(4)
    RUNNER.run(details("stop"), context())
    # When started / Then it is back at 4
    result = RUNNER.run(details("start"), context())
    assert desired_count() == 4
    assert (result.data["previous_desired_count"], result.data["new_desired_count"]) == (0, 4)


def test_start_without_a_remembered_count_starts_one_task(moto_aws: None) -> None:
    web_service(0)
    RUNNER.run(details("start"), context())
    assert desired_count() == 1


@pytest.mark.parametrize("garbage", ["lots", "0", "-3", "2.5", "99999999"])
def test_start_ignores_an_unusable_remembered_count(moto_aws: None, garbage: str) -> None:
    # Given a stopped service whose tag was edited by hand into nonsense
    web_service(0, tags={PREVIOUS_COUNT_TAG: garbage})
    # When started / Then it starts with the default of one task
    RUNNER.run(details("start"), context())
    assert desired_count() == 1


def test_stop_of_a_stopped_service_keeps_the_remembered_count(moto_aws: None) -> None:
    # Given a service stopped from 4 / When stopped again / Then the memory of 4 survives
    arn = web_service(4)
    RUNNER.run(details("stop"), context())
    result = RUNNER.run(details("stop"), context())
    assert result.data["changed"] is False
    assert remembered(arn) == "4"


def test_start_of_a_running_service_keeps_its_count(moto_aws: None) -> None:
    # Given a running service at 3 that once remembered 6 / When started / Then still 3
    web_service(3, tags={PREVIOUS_COUNT_TAG: "6"})
    result = RUNNER.run(details("start"), context())
    assert result.data["changed"] is False and desired_count() == 3


# --- missing, and injected AWS failures -----------------------------------------------------


def test_missing_service_fails_permanently_with_a_not_found_code(moto_aws: None) -> None:
    web_service(1)
    with pytest.raises(PermanentError) as raised:
        RUNNER.run({**details("stop"), "service_name": "api"}, context())
    assert raised.value.code == "ServiceNotFoundException"
    assert "MISSING" in str(raised.value)


def test_missing_cluster_fails_permanently_with_the_aws_code(moto_aws: None) -> None:
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details("stop"), context())
    assert raised.value.code == "ClusterNotFoundException"


@pytest.mark.parametrize(
    "code, error",
    [("ThrottlingException", RetryableError), ("AccessDeniedException", PermanentError)],
)
def test_describe_failure_is_classified(code: str, error: type[RunnerError]) -> None:
    ctx, stubber = stubbed("ecs")
    fail_with(stubber, "describe_services", code)
    with pytest.raises(error) as raised:
        RUNNER.run(details("stop"), ctx)
    assert type(raised.value) is error and raised.value.code == code


def test_a_refused_tag_leaves_the_service_running(moto_aws: None) -> None:
    # Given a running service whose TagResource is denied (a role without ecs:TagResource)
    ctx, stubber = stubbed("ecs")
    stubber.add_response(
        "describe_services",
        {
            "services": [
                {
                    "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/apps/web",
                    "status": "ACTIVE",
                    "desiredCount": 4,
                }
            ],
            "failures": [],
        },
    )
    fail_with(stubber, "tag_resource", "AccessDeniedException")
    # When stopped / Then permanent, and UpdateService was never called (the stub has none)
    with pytest.raises(PermanentError, match="TagResource") as raised:
        RUNNER.run(details("stop"), ctx)
    assert raised.value.code == "AccessDeniedException"
    stubber.assert_no_pending_responses()
