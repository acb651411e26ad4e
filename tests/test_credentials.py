"""Credentials a run acts with: the worker's own, or a role assumed in another account (moto)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.sts.models import sts_backends

from chalicelib.accounts import AccountEntry
from chalicelib.credentials import SESSION_SECONDS, client_factory, role_session_name
from chalicelib.runners import RUNNERS
from chalicelib.runners.base import PermanentError, RetryableError, RunContext, RunnerError
from runner_support import DEFAULT_ACCOUNT, REGION

TARGET_ACCOUNT = "111122223333"
ROLE_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/MinionRunner"
RUN_ID = "20240301T060000Z-s"
INSTANCE = RUNNERS["instanceRunner"]


def entry(**fields: Any) -> AccountEntry:
    return AccountEntry(name="spinup", runners=frozenset({"instanceRunner"}), **fields)


def with_role(**fields: Any) -> AccountEntry:
    return entry(
        **{
            "account_id": TARGET_ACCOUNT,
            "role_arn": ROLE_ARN,
            "external_id": "minion-ext-42",
            **fields,
        }
    )


def assumed_roles(account: str = TARGET_ACCOUNT) -> list[Any]:
    """What moto recorded of the AssumeRole calls into `account`."""
    return list(sts_backends[account]["aws"].assumed_roles)


def target_account_client(service: str) -> Any:
    """A client acting in the target account, from credentials assumed outside the code under
    test, to set up and inspect resources there."""
    issued = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="test-setup"
    )["Credentials"]
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=issued["AccessKeyId"],
        aws_secret_access_key=issued["SecretAccessKey"],
        aws_session_token=issued["SessionToken"],
    )


def answer_sts(session: boto3.session.Session, operation: str, code: str, status: int) -> None:
    """Make every STS `operation` of clients made from `session` fail with exactly `code`, the
    way botocore's Stubber answers (before the request is sent, so no retries)."""

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return (
            AWSResponse("https://sts.amazonaws.com/", status, {}, None),
            {
                "Error": {"Code": code, "Message": f"{code}: injected"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
        )

    session.events.register(f"before-call.sts.{operation}", answer)


# --- session names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id, expected",
    [
        (RUN_ID, f"minion-{RUN_ID}"),
        ("20240301T060000Z-m0a1b2c3d", "minion-20240301T060000Z-m0a1b2c3d"),
        ("run id/with:odd#chars", "minion-run-id-with-odd-chars"),
        ("é" * 10, "minion-" + "-" * 10),
        ("x" * 100, "minion-" + "x" * 57),
    ],
)
def test_role_session_name_carries_the_run_id_within_stss_rules(run_id: str, expected: str) -> None:
    name = role_session_name(run_id)
    assert name == expected
    assert len(name) <= 64


# --- the worker's own credentials ------------------------------------------------------------


def test_without_a_role_clients_act_in_the_workers_own_account(moto_aws: None) -> None:
    # Given an entry with no role / When a client is made / Then it is the worker's account
    client = client_factory(entry(), RUN_ID, default_region=REGION)
    assert client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT
    assert assumed_roles(DEFAULT_ACCOUNT) == []


def test_clients_use_the_entrys_region_else_the_default_and_standard_retries(
    moto_aws: None,
) -> None:
    in_entry_region = client_factory(entry(region="eu-west-1"), RUN_ID, default_region=REGION)
    in_default = client_factory(entry(), RUN_ID, default_region="us-west-2")
    assert in_entry_region("ec2").meta.region_name == "eu-west-1"
    assert in_default("ec2").meta.region_name == "us-west-2"
    assert in_default("ec2").meta.config.retries["mode"] == "standard"


def test_clients_are_cached_per_service(moto_aws: None) -> None:
    client = client_factory(with_role(), RUN_ID, default_region=REGION)
    assert client("ec2") is client("ec2")
    assert client("rds") is not client("ec2")


def test_clients_follow_aws_endpoint_url(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the local stack's endpoint in the environment / Then clients go there unprompted
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:5000")
    client = client_factory(entry(), RUN_ID, default_region=REGION)
    assert client("ec2").meta.endpoint_url == "http://localhost:5000"


def test_an_entry_naming_another_account_without_a_role_is_refused(moto_aws: None) -> None:
    # Given an entry saying account 111122223333 but no role (the worker is in 123456789012)
    client = client_factory(entry(account_id=TARGET_ACCOUNT), RUN_ID, default_region=REGION)
    # When a client is asked for / Then permanent: it would act in the wrong account
    with pytest.raises(PermanentError, match="the worker acts in another account") as raised:
        client("ec2")
    # And the message (a run record a tenant reads) does not name the worker's account
    assert DEFAULT_ACCOUNT not in str(raised.value)


def test_an_entry_naming_the_workers_own_account_needs_no_role(moto_aws: None) -> None:
    client = client_factory(entry(account_id=DEFAULT_ACCOUNT), RUN_ID, default_region=REGION)
    assert client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT


# --- assumed roles ---------------------------------------------------------------------------


def test_role_is_assumed_lazily_once_per_run_with_external_id_and_run_id(moto_aws: None) -> None:
    # Given a factory for an entry with a role
    client = client_factory(with_role(), RUN_ID, default_region=REGION)
    # Then nothing is assumed before a client is needed
    assert assumed_roles() == []
    # When clients of two services are made
    client("ec2")
    client("rds")
    # Then the role was assumed once, with the external id, the run id and a short duration
    [assumed] = assumed_roles()
    assert assumed.role_arn == ROLE_ARN
    assert assumed.external_id == "minion-ext-42"
    assert assumed.session_name == f"minion-{RUN_ID}"
    lifetime = assumed.expiration - datetime.now(UTC).replace(tzinfo=None)
    assert SESSION_SECONDS - 60 < lifetime.total_seconds() <= SESSION_SECONDS == 900


def test_without_an_external_id_none_is_sent(moto_aws: None) -> None:
    client_factory(entry(role_arn=ROLE_ARN), RUN_ID, default_region=REGION)("ec2")
    [assumed] = assumed_roles()
    assert assumed.external_id is None


def test_each_run_assumes_the_role_afresh(moto_aws: None) -> None:
    client_factory(with_role(), "20240301T060000Z-s", default_region=REGION)("ec2")
    client_factory(with_role(), "20240301T070000Z-s", default_region=REGION)("ec2")
    assert [r.session_name for r in assumed_roles()] == [
        "minion-20240301T060000Z-s",
        "minion-20240301T070000Z-s",
    ]


def test_clients_act_in_the_roles_account(moto_aws: None) -> None:
    client = client_factory(with_role(), RUN_ID, default_region=REGION)
    identity = client("sts").get_caller_identity()
    assert identity["Account"] == TARGET_ACCOUNT
    assert identity["Arn"].endswith(f"assumed-role/MinionRunner/minion-{RUN_ID}")


def test_two_accounts_never_share_credentials(moto_aws: None) -> None:
    # Given entries for two accounts, each with its own role
    other = entry(account_id="444455556666", role_arn="arn:aws:iam::444455556666:role/MinionRunner")
    first = client_factory(with_role(), RUN_ID, default_region=REGION)
    second = client_factory(other, RUN_ID, default_region=REGION)
    # Then each acts in its own account (moto tells accounts apart by the access key)
    assert first("sts").get_caller_identity()["Account"] == TARGET_ACCOUNT
    assert second("sts").get_caller_identity()["Account"] == "444455556666"
    assert first("sts").get_caller_identity()["Account"] == TARGET_ACCOUNT


def test_runner_acts_on_the_instance_in_the_roles_account_only(moto_aws: None) -> None:
    # Given a running instance created in account 111122223333
    target_ec2 = target_account_client("ec2")
    instance_id = target_ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    job = {"runner": "instanceRunner", "instance_id": instance_id, "instance_action": "stop"}
    # When the job runs for the entry with the role
    ctx = RunContext(
        account="spinup",
        run_id=RUN_ID,
        job_id="job-1",
        client=client_factory(with_role(), RUN_ID, default_region=REGION),
    )
    result = INSTANCE.run(job, ctx)
    # Then the instance in that account stopped
    assert result.data["previous_state"] == "running"
    state = target_ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]["State"]["Name"]
    assert state == "stopped"
    # And the same job acting in the worker's own account finds no such instance
    own = RunContext(
        account="spinup",
        run_id=RUN_ID,
        job_id="job-1",
        client=client_factory(entry(), RUN_ID, default_region=REGION),
    )
    with pytest.raises(PermanentError) as raised:
        INSTANCE.run(job, own)
    assert raised.value.code == "InvalidInstanceID.NotFound"


def test_a_role_in_another_account_than_the_entrys_is_refused_before_assuming(
    moto_aws: None,
) -> None:
    client = client_factory(with_role(account_id="444455556666"), RUN_ID, default_region=REGION)
    with pytest.raises(PermanentError, match="its role is not in account 444455556666"):
        client("ec2")
    assert assumed_roles() == []


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("AccessDenied", 403, PermanentError),
        ("RegionDisabledException", 403, PermanentError),
        ("Throttling", 400, RetryableError),
        ("InternalFailure", 500, RetryableError),
    ],
)
def test_assume_role_failures_are_classified_with_the_reason(
    moto_aws: None, code: str, status: int, error: type[RunnerError]
) -> None:
    # Given STS answering AssumeRole with this error
    session = boto3.session.Session()
    answer_sts(session, "AssumeRole", code, status)
    client = client_factory(with_role(), RUN_ID, default_region=REGION, session=session)
    # When a client is asked for / Then the run fails, classified, with STS's reason
    with pytest.raises(error) as raised:
        client("ec2")
    assert type(raised.value) is error
    assert raised.value.code == code
    assert "account spinup: sts AssumeRole" in str(raised.value)
    assert f"{code}: injected" in str(raised.value)


def test_a_refused_role_fails_the_run_permanently_and_acts_nowhere(moto_aws: None) -> None:
    # Given a running instance in the target account, and STS refusing the role
    target_ec2 = target_account_client("ec2")
    instance_id = target_ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    session = boto3.session.Session()
    answer_sts(session, "AssumeRole", "AccessDenied", 403)
    ctx = RunContext(
        account="spinup",
        run_id=RUN_ID,
        job_id="job-1",
        client=client_factory(with_role(), RUN_ID, default_region=REGION, session=session),
    )
    # When the job runs / Then a permanent failure saying access was denied; still running
    with pytest.raises(PermanentError, match="access denied"):
        INSTANCE.run(
            {"runner": "instanceRunner", "instance_id": instance_id, "instance_action": "stop"}, ctx
        )
    state = target_ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]["State"]["Name"]
    assert state == "running"
