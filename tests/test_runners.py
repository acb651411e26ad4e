"""What every runner shares: the registry, strict details helpers, and error classification."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.runners import RUNNERS, get_runner
from chalicelib.runners.base import (
    DetailsError,
    PermanentError,
    RetryableError,
    check_keys,
    classify,
    parse_int,
)
from runner_support import EXAMPLES, REGION, context


def client_error(code: str, status: int = 400, message: str = "stub message") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AnyOperation",
    )


# --- registry ------------------------------------------------------------------------------


def test_every_runner_of_the_spec_is_registered_under_its_name() -> None:
    # Given the spec's runner names / Then each resolves to a runner of that name
    assert set(RUNNERS) == set(EXAMPLES)
    for name in EXAMPLES:
        runner = get_runner(name)
        assert runner is not None and runner.name == name
    assert get_runner("shellRunner") is None


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_runner_accepts_its_documented_example(name: str) -> None:
    # Given the README example for the runner / When validated / Then accepted
    RUNNERS[name].validate({"runner": name, **EXAMPLES[name]})


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - {"dummyRunner"}))
def test_each_runner_rejects_an_unknown_key_by_name(name: str) -> None:
    # Given a valid example plus a key no runner knows / Then that key is named
    with pytest.raises(DetailsError) as raised:
        RUNNERS[name].validate({"runner": name, **EXAMPLES[name], "colour": "blue"})
    assert raised.value.key == "colour"


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - {"dummyRunner"}))
def test_each_runner_rejects_a_non_string_value(name: str) -> None:
    # Given a valid example with one value a number instead of text / Then that key is named
    details: dict[str, Any] = {"runner": name, **EXAMPLES[name]}
    key = next(iter(EXAMPLES[name]))
    details[key] = 3
    with pytest.raises(DetailsError) as raised:
        RUNNERS[name].validate(details)
    assert raised.value.key == key


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - {"dummyRunner"}))
def test_each_runner_fails_permanently_at_run_time_on_details_it_would_reject(name: str) -> None:
    # Given a stored job missing its first required key (as an older version might store)
    details = {"runner": name, **EXAMPLES[name]}
    missing = next(iter(EXAMPLES[name]))
    del details[missing]
    # When it runs / Then a permanent failure naming the key, and no AWS client is asked for
    with pytest.raises(PermanentError, match=f"details.{missing}"):
        RUNNERS[name].run(details, context(lambda s: pytest.fail("no AWS call expected")))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(EXAMPLES)),
    changes=st.dictionaries(
        st.sampled_from(
            sorted(
                {k for e in EXAMPLES.values() for k in e}
                | {"launch_type", "security_groups", "assign_public_ip", "max_size"}
            )
        ),
        st.text() | JSON_VALUES,
        max_size=4,
    ),
    drop=st.sets(st.text(max_size=20), max_size=2),
)
def test_validation_never_fails_except_with_a_details_error(
    name: str, changes: dict[str, Any], drop: set[str]
) -> None:
    # Given any JSON the API might receive as details, near each runner's valid example
    details = {
        k: v for k, v in {"runner": name, **EXAMPLES[name], **changes}.items() if k not in drop
    }
    # When validated / Then it passes, or fails with a DetailsError naming a key it has or needs
    try:
        RUNNERS[name].validate(details)
    except DetailsError as error:
        assert (
            error.key in details
            or error.key in EXAMPLES[name]
            or error.key in {"subnets", "desired_count", "desired_capacity", "min_size"}
        )


# --- strict details helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value", [("3", 3), ("+3", 3), ("0", 0), ("-0", 0), ("10", 10), ("007", 7)]
)
def test_strict_integers_accept_plain_decimal_text(text: str, value: int) -> None:
    assert parse_int({"n": text}, "n", minimum=0, maximum=10) == value


@pytest.mark.parametrize(
    "text",
    ["3.0", " 3", "3 ", "three", "", "+", "3\n", "1e1", "0x3", "3_0", "٣", "11", "-1", "9" * 5000],
)
def test_strict_integers_reject_anything_else_or_out_of_range(text: str) -> None:
    with pytest.raises(DetailsError, match=r"^details\.n: must be an integer from 0 to 10$"):
        parse_int({"n": text}, "n", minimum=0, maximum=10)


def test_missing_key_is_named_before_unknown_ones() -> None:
    with pytest.raises(DetailsError) as raised:
        check_keys({"runner": "r", "zzz": "1"}, "r", ("needed",))
    assert (raised.value.key, raised.value.rule) == ("needed", "required by r")


# --- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, status, retryable",
    [
        ("Throttling", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 503, True),
        ("TooManyRequestsException", 429, True),
        ("SomethingNew", 429, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("AnythingAtAll", 502, True),
        ("ExpiredToken", 400, True),
        ("InvalidInstanceID.NotFound", 400, False),
        ("DBInstanceNotFound", 404, False),
        ("DBClusterNotFoundFault", 404, False),
        ("ServiceNotFoundException", 400, False),
        ("ClusterNotFoundException", 400, False),
        ("ResourceNotFoundException", 404, False),
        ("AccessDenied", 403, False),
        ("AccessDeniedException", 400, False),
        ("UnauthorizedOperation", 403, False),
        ("AuthFailure", 401, False),
        ("KMSAccessDeniedException", 502, False),
        ("ScalingActivityInProgress", 400, True),
        ("ValidationError", 400, False),
        ("InvalidParameterValue", 400, False),
        ("SomethingNew", 400, False),
    ],
)
def test_aws_error_codes_are_classified(code: str, status: int, retryable: bool) -> None:
    # Given an AWS error with this code and status / When classified
    error = classify(client_error(code, status), "ec2 StopInstances i-1")
    # Then retryable or permanent as the spec says, keeping the code and AWS's message
    assert isinstance(error, RetryableError if retryable else PermanentError)
    assert error.retryable is retryable
    assert error.code == code
    assert str(error).startswith("ec2 StopInstances i-1: ") and "stub message" in str(error)


@pytest.mark.parametrize(
    "code", ["IncorrectInstanceState", "InvalidDBInstanceState", "InvalidDBClusterStateFault"]
)
def test_state_conflicts_are_retryable_only_between_states(code: str) -> None:
    assert isinstance(classify(client_error(code), "x", between_states=True), RetryableError)
    assert isinstance(classify(client_error(code), "x"), PermanentError)


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
    ],
)
def test_connection_failures_and_timeouts_are_retryable(error: Exception) -> None:
    classified = classify(error, "ec2 StopInstances i-1")
    assert isinstance(classified, RetryableError)
    assert classified.code is None


@pytest.mark.parametrize("error", [NoCredentialsError(), ParamValidationError(report="bad")])
def test_local_configuration_failures_are_permanent(error: Exception) -> None:
    assert isinstance(classify(error, "ec2 StopInstances i-1"), PermanentError)


def test_access_denied_says_so_in_the_message() -> None:
    error = classify(client_error("AccessDenied", 403, "not authorized to perform x"), "sts Y")
    assert str(error) == "sts Y: access denied: AccessDenied: not authorized to perform x"


def test_an_unreachable_endpoint_fails_retryably(moto_aws: None) -> None:
    # Given an EC2 client whose endpoint refuses connections (port 9, one attempt)
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    job = {"runner": "instanceRunner", **EXAMPLES["instanceRunner"]}
    # When a runner acts through it / Then a retryable failure, not a crash
    with pytest.raises(RetryableError, match="EndpointConnectionError"):
        RUNNERS["instanceRunner"].run(job, context(lambda service: ec2))


def test_dummy_runner_with_details_it_does_not_take_fails_permanently_naming_the_key() -> None:
    # Given a dummy job stored with a detail the runner does not take
    from chalicelib.runners import PermanentError, RunContext

    runner = RUNNERS["dummyRunner"]
    context = RunContext(account="spinup", run_id="r", job_id="j", client=lambda _: None)
    # When it runs / Then it fails permanently, and the message names the key
    with pytest.raises(PermanentError, match=r"details\.instance_id"):
        runner.run({"runner": "dummyRunner", "instance_id": "i-1"}, context)
