"""A run acts only on its job's resource, in its entry's account and region, and its error
text names neither the hub account nor a role (issue 12 points 5 and 9), against moto's STS
and botocore's Stubber."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.accounts import AccountEntry
from chalicelib.credentials import client_factory
from chalicelib.runners import RUNNERS, Scope, check_scope, get_runner, session_policy
from chalicelib.runners.base import DetailsError, PermanentError, classify, scrub
from runner_support import DEFAULT_ACCOUNT, REGION
from test_credentials import ROLE_ARN, RUN_ID, TARGET_ACCOUNT, assumed_roles

EXTERNAL_ID = "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP"
SCOPE = Scope(partition="aws", account_id=TARGET_ACCOUNT, region=REGION)
HUB_ROLE = f"arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/minion-prod-WorkerRole-1A2B/minion-w"

# One job of each runner, and the resource ARN its run's credentials must be limited to.
JOBS: dict[str, tuple[dict[str, str], str]] = {
    "instanceRunner": (
        {"instance_id": "i-0123456789abcdef0", "instance_action": "stop"},
        f"arn:aws:ec2:{REGION}:{TARGET_ACCOUNT}:instance/i-0123456789abcdef0",
    ),
    "databaseRunner": (
        {"instance_id": "reports-db", "database_action": "stop"},
        f"arn:aws:rds:{REGION}:{TARGET_ACCOUNT}:db:reports-db",
    ),
    "serviceRunner": (
        {"service_action": "stop", "service_cluster": "apps", "service_name": "web"},
        f"arn:aws:ecs:{REGION}:{TARGET_ACCOUNT}:service/apps/web",
    ),
    "taskRunner": (
        {
            "task_action": "run",
            "task_cluster": "apps",
            "task_name": "nightly:3",
            "count": "1",
            "subnets": "subnet-0123456789abcdef0",
        },
        f"arn:aws:ecs:{REGION}:{TARGET_ACCOUNT}:task-definition/nightly:3",
    ),
    "autoscalingRunner": (
        {"group_name": "workers", "desired_capacity": "0"},
        f"arn:aws:autoscaling:{REGION}:{TARGET_ACCOUNT}:autoScalingGroup:*:"
        "autoScalingGroupName/workers",
    ),
    "lambdaRunner": (
        {"function_name": "cleanup:live"},
        f"arn:aws:lambda:{REGION}:{TARGET_ACCOUNT}:function:cleanup",
    ),
}
# Actions IAM authorizes on "*" only: the session policy may grant them no narrower.
NO_RESOURCE_LEVEL = {"ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups"}


def team(**fields: Any) -> AccountEntry:
    return AccountEntry(
        name="team",
        runners=frozenset({"*"}),
        account_id=TARGET_ACCOUNT,
        role_arn=ROLE_ARN,
        external_id=EXTERNAL_ID,
        region=REGION,
        key="team",
        **fields,
    )


# --- the session policy of a run ------------------------------------------------------------


def test_every_runner_that_calls_aws_says_what_it_needs() -> None:
    assert set(JOBS) == set(RUNNERS) - {"dummyRunner"}


@pytest.mark.parametrize("runner_name", sorted(JOBS))
def test_a_runs_session_policy_allows_only_the_jobs_resource(runner_name: str) -> None:
    details, resource = JOBS[runner_name]
    details = {"runner": runner_name, **details}
    runner = get_runner(runner_name)
    assert runner is not None
    runner.validate(details)
    policy = session_policy(runner, details, SCOPE)
    assert policy["Version"] == "2012-10-17"
    granted = [
        (action, r)
        for s in policy["Statement"]
        for action in s["Action"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    # Then the job's own resource is granted, and every other grant is in the same account
    assert resource in {r for _, r in granted}
    for action, granted_resource in granted:
        if granted_resource == "*":
            assert action in NO_RESOURCE_LEVEL, (action, granted_resource)
        else:
            assert f":{TARGET_ACCOUNT}:" in granted_resource, granted_resource
            assert f":{REGION}:" in granted_resource or granted_resource.startswith(
                "arn:aws:iam::"
            ), granted_resource
    # And STS takes it: a packed policy of at most 2,048 characters
    assert len(json.dumps(policy, separators=(",", ":"))) <= 2048


def test_a_runner_that_declares_nothing_gets_no_permission() -> None:
    class Silent:
        name = "silentRunner"

    policy = session_policy(Silent(), {"runner": "silentRunner"}, SCOPE)  # type: ignore[arg-type]
    assert policy["Statement"] == [{"Effect": "Deny", "Action": "*", "Resource": "*"}]


def test_the_role_is_assumed_with_the_jobs_session_policy(moto_aws: None) -> None:
    # Given a run of an instance job for an entry with a role
    details = {"runner": "instanceRunner", **JOBS["instanceRunner"][0]}
    client = client_factory(team(job_details=details), RUN_ID, default_region=REGION)
    # When it makes its first client
    client("ec2")
    # Then STS got the session policy limiting the credentials to that instance
    [assumed] = assumed_roles()
    assert assumed.external_id == EXTERNAL_ID
    assert json.loads(assumed.policy) == session_policy(RUNNERS["instanceRunner"], details, SCOPE)


def test_without_job_details_no_session_policy_is_sent(moto_aws: None) -> None:
    client_factory(team(), RUN_ID, default_region=REGION)("ec2")
    [assumed] = assumed_roles()
    assert assumed.policy is None


# --- resources of another account or region ------------------------------------------------------


@pytest.mark.parametrize(
    "details, key, said",
    [
        (
            {
                "runner": "lambdaRunner",
                "function_name": "arn:aws:lambda:us-east-1:444455556666:function:x",
            },
            "function_name",
            "account 444455556666",
        ),
        (
            {"runner": "lambdaRunner", "function_name": "444455556666:function:x"},
            "function_name",
            "account 444455556666",
        ),
        (
            {"runner": "lambdaRunner", "function_name": f"eu-west-1:{TARGET_ACCOUNT}:function:x"},
            "function_name",
            "region eu-west-1",
        ),
        (
            {
                "runner": "lambdaRunner",
                "function_name": f"arn:aws-cn:lambda:{REGION}:{TARGET_ACCOUNT}:function:x",
            },
            "function_name",
            "partition aws-cn",
        ),
        (
            {
                "runner": "serviceRunner",
                "service_action": "stop",
                "service_name": "web",
                "service_cluster": "arn:aws:ecs:us-east-1:444455556666:cluster/apps",
            },
            "service_cluster",
            "account 444455556666",
        ),
        (
            {
                "runner": "serviceRunner",
                "service_action": "stop",
                "service_cluster": "apps",
                "service_name": f"arn:aws:ecs:eu-west-1:{TARGET_ACCOUNT}:service/apps/web",
            },
            "service_name",
            "region eu-west-1",
        ),
        (
            {
                "runner": "taskRunner",
                "task_action": "run",
                "task_name": "nightly",
                "count": "1",
                "subnets": "subnet-0123456789abcdef0",
                "task_cluster": "arn:aws:ecs:us-east-1:444455556666:cluster/apps",
            },
            "task_cluster",
            "account 444455556666",
        ),
    ],
)
def test_details_naming_another_accounts_or_regions_resource_are_refused(
    details: dict[str, str], key: str, said: str
) -> None:
    runner = get_runner(details["runner"])
    assert runner is not None
    runner.validate(details)  # well-formed
    with pytest.raises(DetailsError) as raised:
        check_scope(runner, details, SCOPE)
    assert raised.value.key == key
    assert said in str(raised.value)


@pytest.mark.parametrize(
    "function_name",
    [
        "cleanup",
        "cleanup:live",
        f"{TARGET_ACCOUNT}:function:cleanup",
        f"arn:aws:lambda:{REGION}:{TARGET_ACCOUNT}:function:cleanup:3",
        f"{REGION}:{TARGET_ACCOUNT}:function:cleanup",
    ],
)
def test_details_in_the_entrys_account_and_region_are_accepted(function_name: str) -> None:
    details = {
        "runner": "lambdaRunner",
        "function_name": function_name,
        "payload": json.dumps({"target": "arn:aws:s3:::another-accounts-bucket"}),
    }
    check_scope(RUNNERS["lambdaRunner"], details, SCOPE)


def test_a_stored_job_naming_another_account_fails_before_any_role_is_assumed(
    moto_aws: None,
) -> None:
    # Given a job stored before its entry changed account: it names the old account's function
    details = {
        "runner": "lambdaRunner",
        "function_name": "arn:aws:lambda:us-east-1:444455556666:function:x",
    }
    client = client_factory(team(job_details=details), RUN_ID, default_region=REGION)
    # When the run asks for a client / Then it fails permanently, naming the key; no AssumeRole
    with pytest.raises(
        PermanentError,
        match=r"^details\.function_name: names a resource in "
        r"account 444455556666",
    ):
        client("lambda")
    assert assumed_roles() == []


# --- AWS error text in run records ------------------------------------------------------------------


def logged_reasons(caplog: pytest.LogCaptureFixture) -> str:
    """The raw AWS texts logged (at INFO) while the test ran."""
    return "\n".join(str(getattr(record, "reason", "")) for record in caplog.records)


def test_an_assume_role_refusal_names_neither_the_hub_account_nor_a_role(
    moto_aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given STS refusing with its real wording, naming the worker's role and the runner role
    caplog.set_level(logging.INFO)
    session = boto3.session.Session()
    message = (
        f"User: {HUB_ROLE} is not authorized to perform: sts:AssumeRole on resource: {ROLE_ARN}"
    )

    def refuse(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        return (
            AWSResponse("https://sts.amazonaws.com/", 403, {}, None),
            {
                "Error": {"Code": "AccessDenied", "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            },
        )

    session.events.register("before-call.sts.AssumeRole", refuse)
    client = client_factory(team(), RUN_ID, default_region=REGION, session=session)
    # When a client is asked for
    with pytest.raises(PermanentError) as raised:
        client("ec2")
    # Then the error keeps the code and says what happened, without ARNs or account ids
    text = str(raised.value)
    assert raised.value.code == "AccessDenied"
    assert text == (
        "account team: sts AssumeRole: access denied: AccessDenied: User: <arn> is "
        "not authorized to perform: sts:AssumeRole on resource: <arn>"
    )
    assert DEFAULT_ACCOUNT not in text and TARGET_ACCOUNT not in text
    # And the raw text is in the log, for the operator
    assert HUB_ROLE in logged_reasons(caplog)


def test_a_runners_aws_error_is_scrubbed_but_keeps_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given EC2 refusing StopInstances with its real wording (Stubber: the exact error)
    caplog.set_level(logging.INFO)
    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stubber.add_client_error(
        "stop_instances",
        service_error_code="UnauthorizedOperation",
        http_status_code=403,
        service_message=f"You are not authorized to perform this operation. User: "
        f"arn:aws:sts::{TARGET_ACCOUNT}:assumed-role/minion-runner/minion-x is "
        f"not authorized to perform: ec2:StopInstances on resource: "
        f"arn:aws:ec2:{REGION}:{TARGET_ACCOUNT}:instance/i-0123456789abcdef0 "
        f"(account {DEFAULT_ACCOUNT})",
    )
    with stubber:
        try:
            ec2.stop_instances(InstanceIds=["i-0123456789abcdef0"])
        except Exception as error:
            classified = classify(error, "ec2 stop i-0123456789abcdef0")
    assert classified.code == "UnauthorizedOperation"
    assert str(classified) == (
        "ec2 stop i-0123456789abcdef0: access denied: UnauthorizedOperation: You are not "
        "authorized to perform this operation. User: <arn> is not authorized to perform: "
        "ec2:StopInstances on resource: <arn> (account <account>)"
    )
    assert f"arn:aws:sts::{TARGET_ACCOUNT}:assumed-role" in logged_reasons(caplog)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Function not found: arn:aws:lambda:us-east-1:111122223333:function:x",
            "Function not found: <arn>",
        ),
        ("role arn:aws-us-gov:iam::111122223333:role/a/b, then", "role <arn>, then"),
        ("account 111122223333.", "account <account>."),
        (
            "instance i-111122223333ab and 1111222233334 digits",
            "instance i-111122223333ab and 1111222233334 digits",
        ),
    ],
)
def test_scrub_masks_arns_and_account_ids_only(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_the_worker_hands_the_jobs_details_to_the_client_factory(moto_aws: None) -> None:
    # (the worker side is in test_account_isolation.py; this checks the entry carries them)
    entry = replace(team(), job_details={"runner": "dummyRunner"})
    assert entry.job_details == {"runner": "dummyRunner"}
    assert entry == team()  # the details are not part of the entry's identity


def test_a_run_in_the_workers_own_account_refuses_another_accounts_function(moto_aws: None) -> None:
    # Given an entry without role or account (the worker's own), and a stored job naming a
    # function of another account
    entry = AccountEntry(
        name="team",
        runners=frozenset({"*"}),
        key="*",
        job_details={"runner": "lambdaRunner", "function_name": "444455556666:function:x"},
    )
    client = client_factory(entry, RUN_ID, default_region=REGION)
    # When the run asks for a client / Then it fails permanently, naming the key
    with pytest.raises(PermanentError) as raised:
        client("lambda")
    assert str(raised.value) == (
        "details.function_name: names a resource in account "
        "444455556666; the account's registry entry acts in the "
        "stack's own account"
    )
    # And the worker's own account's function is fine
    entry = replace(
        entry,
        job_details={"runner": "lambdaRunner", "function_name": f"{DEFAULT_ACCOUNT}:function:x"},
    )
    assert client_factory(entry, RUN_ID, default_region=REGION)("lambda") is not None
