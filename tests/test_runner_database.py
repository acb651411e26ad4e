"""databaseRunner: validation, and RDS actions on moto's emulated DB instances and clusters."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import DetailsError, PermanentError, RetryableError, RunnerError
from runner_support import REGION, context, fail_with, stubbed

RUNNER = RUNNERS["databaseRunner"]


def details(identifier: str = "reports-db", action: str = "stop") -> dict[str, str]:
    return {"runner": "databaseRunner", "instance_id": identifier, "database_action": action}


def rds() -> Any:
    return boto3.client("rds", region_name=REGION)


def db_instance(name: str = "reports-db", status: str = "available") -> str:
    """An emulated PostgreSQL DB instance, `available` or `stopped`."""
    rds().create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="password1",
        AllocatedStorage=20,
    )
    if status == "stopped":
        rds().stop_db_instance(DBInstanceIdentifier=name)
    return name


def aurora_cluster(name: str = "reports", status: str = "available") -> str:
    """An emulated Aurora PostgreSQL cluster with one instance `<name>-1`."""
    rds().create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="password1",
    )
    rds().create_db_instance(
        DBInstanceIdentifier=f"{name}-1",
        DBInstanceClass="db.r5.large",
        Engine="aurora-postgresql",
        DBClusterIdentifier=name,
    )
    if status == "stopped":
        rds().stop_db_cluster(DBClusterIdentifier=name)
    return name


def instance_status(name: str) -> str:
    return rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0][
        "DBInstanceStatus"
    ]


def cluster_status(name: str) -> str:
    return rds().describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]["Status"]


def described(status: str) -> dict[str, Any]:
    """A DescribeDBInstances answer for a Stubber: `reports-db` in `status`."""
    return {"DBInstances": [{"DBInstanceIdentifier": "reports-db", "DBInstanceStatus": status}]}


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["a", "reports-db", "Reports-DB-2", "a" * 63])
def test_rds_identifiers_are_accepted(identifier: str) -> None:
    RUNNER.validate(details(identifier))


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"runner": "databaseRunner", "database_action": "stop"}, "instance_id"),
        ({"runner": "databaseRunner", "instance_id": "db"}, "database_action"),
        ({**details(), "instance_action": "stop"}, "instance_action"),
        (details(identifier="1db"), "instance_id"),
        (details(identifier="db-"), "instance_id"),
        (details(identifier="db--1"), "instance_id"),
        (details(identifier="db_1"), "instance_id"),
        (details(identifier="a" * 64), "instance_id"),
        (details(identifier=""), "instance_id"),
        (details(identifier="arn:aws:rds:us-east-1:123456789012:db:x"), "instance_id"),
        (details(action="hibernate"), "database_action"),
        (details(action="delete"), "database_action"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, str], key: str) -> None:
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key


def test_run_with_invalid_stored_details_fails_permanently() -> None:
    with pytest.raises(PermanentError, match="details.database_action"):
        RUNNER.run(details(action="delete"), context(lambda s: pytest.fail("no AWS call")))


# --- DB instances --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, initial, final",
    [
        ("stop", "available", "stopped"),
        ("start", "stopped", "available"),
        ("reboot", "available", "available"),
    ],
)
def test_action_on_a_db_instance_changes_it(
    moto_aws: None, action: str, initial: str, final: str
) -> None:
    # Given a DB instance in the initial state
    name = db_instance(status=initial)
    # When the runner acts / Then RDS shows the result and the output says before and after
    result = RUNNER.run(details(name, action), context())
    assert instance_status(name) == final
    assert result.data["kind"] == "instance"
    assert (result.data["previous_state"], result.data["changed"]) == (initial, True)
    assert f"{action}: {initial} -> " in result.output


@pytest.mark.parametrize("action, status", [("start", "available"), ("stop", "stopped")])
def test_db_instance_already_in_the_wanted_state_is_a_success(
    moto_aws: None, action: str, status: str
) -> None:
    # Given a DB instance already there (RDS itself would answer InvalidDBInstanceState)
    name = db_instance(status=status)
    # When the runner acts / Then success without change
    result = RUNNER.run(details(name, action), context())
    assert result.data["changed"] is False
    assert result.data["new_state"] == status == instance_status(name)
    assert "already" in result.output


def test_reboot_of_a_stopped_db_instance_fails_permanently(moto_aws: None) -> None:
    # Given a stopped DB instance (moto would "reboot" it; RDS would not)
    name = db_instance(status="stopped")
    with pytest.raises(PermanentError, match="only an available instance reboots"):
        RUNNER.run(details(name, "reboot"), context())
    assert instance_status(name) == "stopped"


def test_missing_database_fails_permanently_with_the_aws_code(moto_aws: None) -> None:
    # Given neither a DB instance nor a cluster of that name
    with pytest.raises(PermanentError) as raised:
        RUNNER.run(details("nothing-here", "stop"), context())
    assert raised.value.code == "DBInstanceNotFound"
    assert "no DB instance or DB cluster named nothing-here" in str(raised.value)


# --- Aurora clusters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, initial, final", [("stop", "available", "stopped"), ("start", "stopped", "available")]
)
def test_action_on_an_aurora_cluster_changes_the_cluster(
    moto_aws: None, action: str, initial: str, final: str
) -> None:
    # Given an Aurora cluster (its identifier names no DB instance)
    name = aurora_cluster(status=initial)
    # When the runner acts on the identifier / Then the cluster changed
    result = RUNNER.run(details(name, action), context())
    assert cluster_status(name) == final
    assert (result.data["kind"], result.data["previous_state"]) == ("cluster", initial)


def test_aurora_cluster_already_stopped_is_a_success(moto_aws: None) -> None:
    name = aurora_cluster(status="stopped")
    result = RUNNER.run(details(name, "stop"), context())
    assert (result.data["kind"], result.data["changed"]) == ("cluster", False)
    assert cluster_status(name) == "stopped"


def test_stopping_an_aurora_member_instance_names_its_cluster(moto_aws: None) -> None:
    # Given an Aurora cluster's instance / When asked to stop it / Then permanent: stop the
    # cluster instead; the cluster keeps running
    name = aurora_cluster()
    with pytest.raises(PermanentError, match=f"belongs to Aurora cluster {name}"):
        RUNNER.run(details(f"{name}-1", "stop"), context())
    assert cluster_status(name) == "available"


def test_reboot_of_an_aurora_cluster_asks_for_its_instances(moto_aws: None) -> None:
    name = aurora_cluster()
    with pytest.raises(PermanentError, match=f"reboot its instances \\({name}-1\\)"):
        RUNNER.run(details(name, "reboot"), context())


# --- injected AWS failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("Throttling", 400, RetryableError),
        ("InternalFailure", 500, RetryableError),
        ("AccessDenied", 403, PermanentError),
    ],
)
def test_describe_failure_is_classified(code: str, status: int, error: type[RunnerError]) -> None:
    ctx, stubber = stubbed("rds")
    fail_with(stubber, "describe_db_instances", code, status)
    with pytest.raises(error) as raised:
        RUNNER.run(details(), ctx)
    assert type(raised.value) is error and raised.value.code == code
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    "status, error",
    [
        ("backing-up", RetryableError),
        ("modifying", RetryableError),
        ("storage-full", PermanentError),
        ("incompatible-parameters", PermanentError),
    ],
)
def test_invalid_state_is_retryable_only_while_the_instance_is_between_states(
    status: str, error: type[RunnerError]
) -> None:
    # Given a DB instance in `status` whose StopDBInstance is refused for its state
    ctx, stubber = stubbed("rds")
    stubber.add_response("describe_db_instances", described(status))
    fail_with(stubber, "stop_db_instance", "InvalidDBInstanceState")
    # When stopped / Then retry only if the status passes by itself
    with pytest.raises(error) as raised:
        RUNNER.run(details(), ctx)
    assert type(raised.value) is error and raised.value.code == "InvalidDBInstanceState"
    stubber.assert_no_pending_responses()


def test_throttled_action_is_retryable() -> None:
    ctx, stubber = stubbed("rds")
    stubber.add_response("describe_db_instances", described("available"))
    fail_with(stubber, "stop_db_instance", "ThrottlingException")
    with pytest.raises(RetryableError) as raised:
        RUNNER.run(details(), ctx)
    assert raised.value.code == "ThrottlingException"
