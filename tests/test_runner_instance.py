"""instanceRunner: validation, and EC2 actions against moto's emulated instances."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import DetailsError, PermanentError, RetryableError, RunnerError
from runner_support import REGION, context, fail_with, stubbed

RUNNER = RUNNERS["instanceRunner"]
GOOD_ID = "i-0123456789abcdef0"


def details(instance_id: str = GOOD_ID, action: str = "stop") -> dict[str, str]:
    return {"runner": "instanceRunner", "instance_id": instance_id, "instance_action": action}


def launch(state: str = "running") -> str:
    """An emulated EC2 instance in `state` (running, stopped or terminated); its id."""
    ec2 = boto3.client("ec2", region_name=REGION)
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance_id])
    elif state == "terminated":
        ec2.terminate_instances(InstanceIds=[instance_id])
    return instance_id


def state_of(instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    reservation = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return reservation["Instances"][0]["State"]["Name"]


def describe_response(instance_id: str, state: str) -> dict[str, Any]:
    """A DescribeInstances answer for a Stubber: one instance in `state`."""
    return {
        "Reservations": [
            {"Instances": [{"InstanceId": instance_id, "State": {"Code": 0, "Name": state}}]}
        ]
    }


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("instance_id", ["i-0123abcd", "i-0123456789abcdef0"])
@pytest.mark.parametrize("action", ["start", "stop", "reboot", "hibernate"])
def test_valid_details_are_accepted(instance_id: str, action: str) -> None:
    # Given an 8- or 17-digit id and each allowed action / When validated / Then no error
    RUNNER.validate(details(instance_id, action))


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"runner": "instanceRunner", "instance_action": "stop"}, "instance_id"),
        ({"runner": "instanceRunner", "instance_id": GOOD_ID}, "instance_action"),
        ({**details(), "region": "eu-west-1"}, "region"),
        (details(instance_id="i-0123ABCD"), "instance_id"),
        (details(instance_id="i-0123456"), "instance_id"),
        (details(instance_id="i-0123456789"), "instance_id"),
        (details(instance_id="0123456789abcdef0"), "instance_id"),
        (details(instance_id=" i-0123abcd"), "instance_id"),
        (details(instance_id="i-0123abcd\n"), "instance_id"),
        (details(instance_id="i-0123456789abcdefg"), "instance_id"),
        (details(action="terminate"), "instance_action"),
        (details(action="Start"), "instance_action"),
        (details(action=""), "instance_action"),
        ({**details(), "instance_id": 123}, "instance_id"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, Any], key: str) -> None:
    # Given details breaking one rule / When validated / Then the error names that key
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"details.{key}: ")


def test_run_with_invalid_stored_details_fails_permanently(moto_aws: None) -> None:
    # Given a job stored with an action this version does not know
    # When it runs / Then the run fails permanently, naming the key, and nothing is called
    with pytest.raises(PermanentError, match="details.instance_action"):
        RUNNER.run(details(action="terminate"), context(lambda s: pytest.fail("no AWS call")))


# --- actions on emulated instances ---------------------------------------------------------


@pytest.mark.parametrize(
    "action, initial, final",
    [
        ("stop", "running", "stopped"),
        ("hibernate", "running", "stopped"),
        ("start", "stopped", "running"),
    ],
)
def test_action_changes_the_instance_state(
    moto_aws: None, action: str, initial: str, final: str
) -> None:
    # Given an instance in the initial state
    instance_id = launch(initial)
    # When the runner acts on it
    result = RUNNER.run(details(instance_id, action), context())
    # Then the instance really changed, and the output says from what to what
    assert state_of(instance_id) == final
    assert result.data["previous_state"] == initial
    assert result.data["changed"] is True
    assert instance_id in result.output and initial in result.output


def test_hibernate_asks_ec2_to_hibernate(moto_aws: None) -> None:
    # Given a running instance and a record of the StopInstances requests sent
    instance_id = launch("running")
    ctx = context()
    sent: list[dict[str, Any]] = []
    ctx.client("ec2").meta.events.register(
        "provide-client-params.ec2.StopInstances", lambda params, **_: sent.append(params)
    )
    # When it is hibernated / Then StopInstances carried Hibernate=True
    RUNNER.run(details(instance_id, "hibernate"), ctx)
    assert sent == [{"InstanceIds": [instance_id], "Hibernate": True}]


def test_reboot_of_a_running_instance_leaves_it_running(moto_aws: None) -> None:
    # Given a running instance / When rebooted / Then it reports a change and still runs
    instance_id = launch("running")
    result = RUNNER.run(details(instance_id, "reboot"), context())
    assert result.data["changed"] is True
    assert state_of(instance_id) == "running"


@pytest.mark.parametrize(
    "action, state", [("start", "running"), ("stop", "stopped"), ("hibernate", "stopped")]
)
def test_action_on_an_instance_already_in_that_state_succeeds_without_change(
    moto_aws: None, action: str, state: str
) -> None:
    # Given an instance already where the action leads
    instance_id = launch(state)
    # When the runner acts / Then it succeeds, says nothing changed, and the state holds
    result = RUNNER.run(details(instance_id, action), context())
    assert result.data == {
        "instance_id": instance_id,
        "action": action,
        "previous_state": state,
        "new_state": state,
        "changed": False,
    }
    assert "already" in result.output
    assert state_of(instance_id) == state


def test_reboot_of_a_stopped_instance_fails_permanently(moto_aws: None) -> None:
    # Given a stopped instance / When rebooted / Then a permanent failure, still stopped
    instance_id = launch("stopped")
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details(instance_id, "reboot"), context())
    assert raised.value.code == "IncorrectInstanceState"
    assert state_of(instance_id) == "stopped"


def test_start_of_a_terminated_instance_fails_permanently(moto_aws: None) -> None:
    # Given a terminated instance (moto would "start" it; EC2 would not)
    instance_id = launch("terminated")
    # When started / Then a permanent failure, and it stays terminated
    with pytest.raises(PermanentError, match="terminated"):
        RUNNER.run(details(instance_id, "start"), context())
    assert state_of(instance_id) == "terminated"


def test_missing_instance_fails_permanently_with_the_aws_code(moto_aws: None) -> None:
    # Given no such instance / When stopped / Then permanent, with EC2's not-found code
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details(GOOD_ID, "stop"), context())
    assert raised.value.code == "InvalidInstanceID.NotFound"
    assert GOOD_ID in str(raised.value)


# --- injected AWS failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("RequestLimitExceeded", 503, RetryableError),
        ("Throttling", 400, RetryableError),
        ("InternalError", 500, RetryableError),
        ("UnauthorizedOperation", 403, PermanentError),
        ("AuthFailure", 401, PermanentError),
    ],
)
def test_describe_failure_is_classified(code: str, status: int, error: type[RunnerError]) -> None:
    # Given EC2 answering DescribeInstances with this error
    ctx, stubber = stubbed("ec2")
    fail_with(stubber, "describe_instances", code, status)
    # When the runner runs / Then the failure is classified, carrying the AWS code
    with pytest.raises(error) as raised:
        RUNNER.run(details(GOOD_ID, "stop"), ctx)
    assert type(raised.value) is error
    assert raised.value.code == code
    stubber.assert_no_pending_responses()


def test_access_denied_on_the_action_fails_permanently() -> None:
    # Given a running instance whose StopInstances is refused
    ctx, stubber = stubbed("ec2")
    stubber.add_response("describe_instances", describe_response(GOOD_ID, "running"))
    fail_with(stubber, "stop_instances", "UnauthorizedOperation", 403)
    # When stopped / Then permanent, saying access was denied
    with pytest.raises(PermanentError, match="access denied") as raised:
        RUNNER.run(details(GOOD_ID, "stop"), ctx)
    assert raised.value.code == "UnauthorizedOperation"
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    "state_now, error",
    [("stopping", RetryableError), ("pending", RetryableError), ("stopped", PermanentError)],
)
def test_incorrect_state_is_retryable_only_while_between_states(
    state_now: str, error: type[RunnerError]
) -> None:
    # Given a start refused with IncorrectInstanceState, the instance then being in state_now
    ctx, stubber = stubbed("ec2")
    stubber.add_response("describe_instances", describe_response(GOOD_ID, "stopped"))
    fail_with(stubber, "start_instances", "IncorrectInstanceState")
    stubber.add_response("describe_instances", describe_response(GOOD_ID, state_now))
    # When started / Then retryable while stopping or pending, permanent otherwise
    with pytest.raises(error) as raised:
        RUNNER.run(details(GOOD_ID, "start"), ctx)
    assert type(raised.value) is error
    assert raised.value.code == "IncorrectInstanceState"
    stubber.assert_no_pending_responses()


def test_reboot_of_a_pending_instance_is_retryable_and_not_attempted() -> None:
    # Given an instance still pending (the stub would fail on any RebootInstances call)
    ctx, stubber = stubbed("ec2")
    stubber.add_response("describe_instances", describe_response(GOOD_ID, "pending"))
    # When rebooted / Then retry later
    with pytest.raises(RetryableError) as raised:
        RUNNER.run(details(GOOD_ID, "reboot"), ctx)
    assert raised.value.code == "IncorrectInstanceState"
    stubber.assert_no_pending_responses()


def test_the_seed_readmes_sixteen_digit_instance_id_is_accepted() -> None:
    # Given minion's own README example id (16 hex digits) / Then it validates
    RUNNERS["instanceRunner"].validate(details(instance_id="i-aaaabbbb11112222"))
