"""The account registry, validated where it is loaded: every refusal names its source and key,
role entries carry a generated ExternalId and a role the worker may assume, and `*` carries no
role (issue 12 points 4 and 6, issue 13 point 2)."""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.accounts import Registry, RegistryError, load_registry_document
from chalicelib.errors import ServiceUnavailable
from chalicelib.settings import Settings, SettingsError

ROLE = "arn:aws:iam::111122223333:role/minion-runner"
EXTERNAL_ID = "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP"  # what secrets.token_urlsafe(24) looks like
SOURCE = "SSM parameter /minion/accounts"


def role_entry(**fields: Any) -> dict[str, Any]:
    return {
        "runners": ["instanceRunner"],
        "account_id": "111122223333",
        "role_arn": ROLE,
        "external_id": EXTERNAL_ID,
        **fields,
    }


def refused(document: Any, roles: tuple[str, ...] | None = (ROLE,)) -> str:
    """The message a registry document is refused with."""
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(RegistryError) as raised:
        Registry.from_document(text, source=SOURCE, allowed_roles=roles)
    return str(raised.value)


# --- what is refused, and how the message says it ----------------------------------------------


@pytest.mark.parametrize(
    "document, expected",
    [
        # malformed JSON: a trailing comma, the mistake of issue 13
        (
            '{"accounts": {"spinup": {"runners": ["dummyRunner"]},}}',
            f"{SOURCE}: malformed JSON: Expecting property name enclosed in double quotes at line 1 "
            "column 54",
        ),
        ("", f"{SOURCE}: malformed JSON: Expecting value at line 1 column 1"),
        ("[]", f'{SOURCE}: expected {{"accounts": {{...}}}}'),
        ({"acounts": {}}, f'{SOURCE}: expected {{"accounts": {{...}}}}'),
        (
            {"accounts": {}, "version": 2},
            f"{SOURCE}: version: unknown key (expected only accounts)",
        ),
        (
            '{"accounts": {"a": {"runners": []}, "a": {"runners": ["*"]}}}',
            f"{SOURCE}: a: given twice",
        ),
        # a typo in an entry's keys is refused, not ignored until a run says "not allowed"
        (
            {"accounts": {"spinup": {"runner": ["dummyRunner"]}}},
            f"{SOURCE}: accounts.spinup.runner: unknown key (did you mean runners?); expected "
            "runners, account_id, role_arn, external_id, region",
        ),
        (
            {"accounts": {"spinup": {"runners": "dummyRunner"}}},
            f"{SOURCE}: accounts.spinup.runners: expected a list of runner names",
        ),
        (
            {"accounts": {"spinup": {"runners": ["dummyRunner", "instanceRuner"]}}},
            f"{SOURCE}: accounts.spinup.runners[1]: unknown runner 'instanceRuner' (expected * or one "
            "of autoscalingRunner, databaseRunner, dummyRunner, instanceRunner, lambdaRunner, "
            "serviceRunner, taskRunner)",
        ),
        ({"accounts": {"spinup": []}}, f"{SOURCE}: accounts.spinup: expected an object"),
        (
            {"accounts": {"spin/up": {"runners": []}}},
            f"{SOURCE}: accounts.spin/up: not an account name (1-64 of A-Z a-z 0-9 . _ -)",
        ),
        (
            {"accounts": {"spinup": role_entry(account_id="11112222333")}},
            f"{SOURCE}: accounts.spinup.account_id: expected 12 digits",
        ),
        (
            {"accounts": {"spinup": role_entry(account_id=111122223333)}},
            f"{SOURCE}: accounts.spinup.account_id: expected a string",
        ),
        (
            {"accounts": {"spinup": role_entry(region="us-east-1 ")}},
            f"{SOURCE}: accounts.spinup.region: 'us-east-1 ' is not an AWS region name",
        ),
        (
            {"accounts": {"spinup": role_entry(role_arn="arn:aws:iam::111122223333:user/minion")}},
            f"{SOURCE}: accounts.spinup.role_arn: not an IAM role ARN "
            "(arn:aws:iam::<12 digits>:role/<name>)",
        ),
        (
            {"accounts": {"spinup": role_entry(role_arn="arn:aws:iam::*:role/minion-runner")}},
            f"{SOURCE}: accounts.spinup.role_arn: not an IAM role ARN "
            "(arn:aws:iam::<12 digits>:role/<name>)",
        ),
        (
            {"accounts": {"spinup": role_entry(account_id="444455556666")}},
            f"{SOURCE}: accounts.spinup.role_arn: the role is in account 111122223333, not in "
            "account_id 444455556666",
        ),
        (
            {"accounts": {"spinup": {"runners": [], "role_arn": ROLE, "external_id": EXTERNAL_ID}}},
            f"{SOURCE}: accounts.spinup.account_id: required with role_arn",
        ),
    ],
)
def test_a_broken_registry_is_refused_naming_the_source_and_the_key(
    document: Any, expected: str
) -> None:
    assert refused(document) == expected


def test_a_refused_registry_is_a_503_not_a_500() -> None:
    # The API maps it in its one place for domain errors: 503, its message shown
    assert issubclass(RegistryError, ServiceUnavailable)
    assert RegistryError("x").status == 503


# --- the confused deputy: ExternalId and the roles the worker may assume (12.4) ---------------


@pytest.mark.parametrize(
    "external_id",
    [
        None,
        "",
        "optional",
        "minion-e2e",
        "x" * 40,
        "ab" * 20,
        "secret" * 6,
        "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6l",  # 31 characters
        "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP\n",
        "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6l P",
    ],
)
def test_a_role_without_a_generated_external_id_is_refused(external_id: str | None) -> None:
    entry = role_entry(external_id=external_id)
    if external_id is None:
        del entry["external_id"]
    message = refused({"accounts": {"spinup": entry}})
    assert message.startswith(f"{SOURCE}: accounts.spinup.external_id: ")
    assert "secrets.token_urlsafe" in message  # how to make one
    # And the refusal never repeats the value (it is a shared secret of sorts)
    if external_id and len(external_id) > 8:
        assert external_id.strip() not in message


@pytest.mark.parametrize(
    "make",
    [lambda: secrets.token_urlsafe(24), lambda: str(uuid.uuid4()), lambda: secrets.token_hex(16)],
    ids=["token_urlsafe(24)", "uuid4", "token_hex(16)"],
)
def test_generated_external_ids_are_accepted(make: Any) -> None:
    for _ in range(200):
        registry = Registry.from_document(
            json.dumps({"accounts": {"spinup": role_entry(external_id=make())}}),
            allowed_roles=[ROLE],
        )
        assert registry.get("spinup").external_id  # type: ignore[union-attr]


def test_one_external_id_for_two_accounts_is_refused() -> None:
    other = "arn:aws:iam::444455556666:role/minion-runner"
    message = refused(
        {
            "accounts": {
                "spinup": role_entry(),
                "team": role_entry(account_id="444455556666", role_arn=other),
            }
        },
        roles=(ROLE, other),
    )
    assert message == (
        f"{SOURCE}: accounts.team.external_id: also used for account "
        "111122223333; generate one per account"
    )
    # Two minion accounts acting in the same AWS account may share its role and id
    Registry.from_document(
        {"accounts": {"spinup": role_entry(), "spinup-b": role_entry()}}, allowed_roles=[ROLE]
    )


@pytest.mark.parametrize("roles", [(), ("arn:aws:iam::111122223333:role/other",)])
def test_a_role_the_worker_may_not_assume_is_refused(roles: tuple[str, ...]) -> None:
    assert refused({"accounts": {"spinup": role_entry()}}, roles=roles) == (
        f"{SOURCE}: accounts.spinup.role_arn: not among the runner roles the worker may assume "
        "(MINION_RUNNER_ROLE_ARNS, the stack's RunnerRoleArns)"
    )


def test_an_external_id_without_a_role_is_refused() -> None:
    assert refused({"accounts": {"spinup": {"runners": [], "external_id": EXTERNAL_ID}}}) == (
        f"{SOURCE}: accounts.spinup.external_id: only with role_arn"
    )


def test_the_local_default_needs_no_role_no_account_and_no_list() -> None:
    # Given the registry `make run` uses without MINION_ACCOUNTS_FILE, and an own-account entry
    registry = Registry.from_document(
        {
            "accounts": {
                "*": {"runners": ["*"]},
                "own": {"runners": ["instanceRunner"], "account_id": "123456789012"},
            }
        },
        allowed_roles=[],
    )
    # Then it loads; any account name resolves to the default entry
    entry = registry.get("anyone")
    assert entry is not None and entry.is_default and entry.allows("taskRunner")
    assert entry.role_arn is None and entry.account_id is None
    own = registry.get("own")
    assert own is not None and not own.is_default and own.key == "own"


def test_the_runner_roles_setting_refuses_wildcards() -> None:
    settings = Settings.from_env({"MINION_RUNNER_ROLE_ARNS": f" {ROLE} ,"})
    assert settings.runner_role_arns == (ROLE,)
    assert Settings.from_env({}).runner_role_arns == ()
    with pytest.raises(SettingsError, match=r"MINION_RUNNER_ROLE_ARNS: .*\(no wildcards\)"):
        Settings.from_env({"MINION_RUNNER_ROLE_ARNS": "arn:aws:iam::*:role/minion-runner"})


# --- the * entry carries no role (12.6) -----------------------------------------------------------


@pytest.mark.parametrize(
    "key, value", [("role_arn", ROLE), ("external_id", EXTERNAL_ID), ("account_id", "111122223333")]
)
def test_the_default_entry_cannot_name_a_role_or_an_account(key: str, value: str) -> None:
    assert refused({"accounts": {"*": {"runners": ["dummyRunner"], key: value}}}) == (
        f"{SOURCE}: accounts.*.{key}: the * entry cannot name an account or role; give the "
        "account an entry of its own"
    )


# --- where it is loaded from -----------------------------------------------------------------------


def test_a_registry_file_is_named_in_its_refusal(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text('{"accounts": {"spinup": {"runner": []}}}')
    with pytest.raises(
        RegistryError,
        match=rf"^MINION_ACCOUNTS_FILE {path}: "
        r"accounts\.spinup\.runner: unknown key",
    ):
        load_registry_document(None, str(path), None)
    with pytest.raises(
        RegistryError,
        match=rf"^MINION_ACCOUNTS_FILE {tmp_path}/none.json: "
        r"cannot be read \(No such file or directory\)$",
    ):
        load_registry_document(None, str(tmp_path / "none.json"), None)


def test_inline_registry_is_named_in_its_refusal() -> None:
    with pytest.raises(RegistryError, match=r"^MINION_ACCOUNTS: malformed JSON"):
        load_registry_document('{"accounts": {', None, None)


def test_the_allowed_roles_are_enforced_when_loading() -> None:
    document = json.dumps({"accounts": {"spinup": role_entry()}})
    with pytest.raises(RegistryError, match="not among the runner roles"):
        load_registry_document(document, None, None)
    assert load_registry_document(document, None, None, [ROLE]).get("spinup") is not None


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Any:
    from aws_lambda_powertools.utilities import parameters

    with mock_aws():
        parameters.clear_caches()
        yield boto3.client("ssm")
        parameters.clear_caches()


def test_a_missing_registry_parameter_is_a_registry_error_naming_it(ssm: Any) -> None:
    with pytest.raises(RegistryError) as raised:
        load_registry_document(None, None, "/minion/accounts")
    assert str(raised.value) == (
        "SSM parameter /minion/accounts: cannot be read: "
        "ParameterNotFound (create it: docs/deploying.md)"
    )


def test_a_registry_parameter_is_named_in_its_refusal(ssm: Any) -> None:
    ssm.put_parameter(
        Name="/minion/accounts",
        Type="String",
        Value='{"accounts": {"spinup": {"runners": ["dummyRunner"]},}}',
    )
    with pytest.raises(RegistryError, match=r"^SSM parameter /minion/accounts: malformed JSON"):
        load_registry_document(None, None, "/minion/accounts")


# --- make run -----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_run_refuses_to_start_with_a_broken_registry_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # Given a registry file with a trailing comma
    registry = tmp_path / "accounts.json"
    registry.write_text('{"accounts": {"team": {"runners": ["dummyRunner"]},}}')
    env = {
        **os.environ,
        "MINION_ACCOUNTS_FILE": str(registry),
        "MINION_STATE_DIR": str(tmp_path / "state"),
        "MINION_PORT": str(free_port()),
        "MINION_AWS_PORT": str(free_port()),
    }
    # When the local stack starts
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "local.stack"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it stops at once, naming the file and what is wrong
    assert result.returncode != 0
    assert (
        f"minion: MINION_ACCOUNTS_FILE {registry}: malformed JSON: Expecting property name "
        "enclosed in double quotes at line 1 column 52"
    ) in result.stderr
