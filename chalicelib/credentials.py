"""Credentials a run acts with: the worker's own, or a role assumed in the job's account."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .accounts import AccountEntry, names_an_account
from .runners import get_runner
from .runners.base import DetailsError, PermanentError, check_scope, classify, session_policy

# Standard mode retries throttling, 5xx and connection errors with backoff inside one attempt
# of the run; what still fails is classified and left to the worker's own retry.
CLIENT_CONFIG = Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=30)
# The shortest STS allows; a worker invocation never outlives it (Lambda stops at 900 s).
SESSION_SECONDS = 900
SESSION_NAME_PREFIX = "minion-"
_NOT_IN_SESSION_NAME = re.compile(r"[^\w+=,.@-]", re.ASCII)
_ROLE_ACCOUNT = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/.+")


def role_session_name(run_id: str) -> str:
    """`minion-<run id>` as a RoleSessionName: at most 64 characters of [\\w+=,.@-]."""
    return _NOT_IN_SESSION_NAME.sub("-", SESSION_NAME_PREFIX + run_id)[:64]


class AccountClients:
    """boto3 clients acting in one registry entry's account and region, for one run.

    With a role, the role is assumed on the first client and its credentials serve every
    client of this object; they are never shared with another entry or run.
    """

    def __init__(
        self,
        entry: AccountEntry,
        run_id: str,
        *,
        region: str,
        session: boto3.session.Session | None = None,
    ) -> None:
        self.entry = entry
        self.run_id = run_id
        self.region = region
        # Default: the process's one session (aws.session), which loads each service's model
        # once (about 0.3 s for EC2) and holds the worker's own credentials. Assumed
        # credentials never go into it: they are passed to each client explicitly.
        self._session = session
        self._clients: dict[str, Any] = {}
        self._credentials: dict[str, str] | None = None

    def __call__(self, service: str) -> Any:
        """The cached client for `service` in the entry's account and region."""
        if not self._clients:
            self._check_scope()
        if service not in self._clients:
            credentials = self._assumed() if self.entry.role_arn else self._own()
            self._clients[service] = self._client(service, **credentials)
        return self._clients[service]

    def _client(self, service: str, **credentials: str) -> Any:
        return aws.new_client(
            service,
            from_session=self._session,
            region_name=self.region,
            config=CLIENT_CONFIG,
            **credentials,
        )

    def _check_scope(self) -> None:
        """Before the first client: the job's details must name resources of the entry's
        account and region (a job stored before the registry changed may not)."""
        details = self.entry.job_details
        runner = get_runner(details.get("runner", "")) if details else None
        if details is None or runner is None:
            return
        own = None
        if self.entry.account_id is None and names_an_account(details):
            # Acting in the worker's own account: a detail naming another one is refused too.
            own = self._own_account()
        try:
            check_scope(runner, details, self.entry.scope(self.region, own))
        except DetailsError as error:
            raise PermanentError(str(error)) from None

    def _own_account(self) -> str:
        try:
            return str(self._sts().get_caller_identity()["Account"])
        except (ClientError, BotoCoreError) as error:
            raise classify(error, "sts GetCallerIdentity") from error

    def session_policy(self) -> dict[str, Any] | None:
        """The AssumeRole session policy of this run: the role's permissions narrowed to the
        job's resources (None without job details: the role's own permissions)."""
        details = self.entry.job_details
        if details is None:
            return None
        runner = get_runner(details.get("runner", ""))
        if runner is None:
            raise PermanentError(f"details.runner: unknown runner {details.get('runner')!r}")
        return session_policy(runner, details, self.entry.scope(self.region))

    def _assumed(self) -> dict[str, str]:
        """The role's credentials, assumed once; PermanentError when the role refuses.

        Messages name the minion account, never the role's ARN or the worker's account: they
        end up in run records that the account's API clients read.
        """
        if self._credentials is None:
            role_arn = str(self.entry.role_arn)
            match = _ROLE_ACCOUNT.fullmatch(role_arn)
            if match and self.entry.account_id and match.group(1) != self.entry.account_id:
                raise PermanentError(
                    f"account {self.entry.name}: its role is not in account {self.entry.account_id}"
                )
            request: dict[str, Any] = {
                "RoleArn": role_arn,
                "DurationSeconds": SESSION_SECONDS,
                "RoleSessionName": role_session_name(self.run_id),
            }
            if self.entry.external_id:
                request["ExternalId"] = self.entry.external_id
            policy = self.session_policy()
            if policy is not None:
                request["Policy"] = json.dumps(policy, separators=(",", ":"))
            try:
                answer = self._sts().assume_role(**request)
            except (ClientError, BotoCoreError) as error:
                raise classify(error, f"account {self.entry.name}: sts AssumeRole") from error
            issued = answer["Credentials"]
            self._credentials = {
                "aws_access_key_id": issued["AccessKeyId"],
                "aws_secret_access_key": issued["SecretAccessKey"],
                "aws_session_token": issued["SessionToken"],
            }
        return self._credentials

    def _own(self) -> dict[str, str]:
        """No credentials to pass: the worker's own. Checks they are in the entry's account."""
        if self._credentials is None:
            if self.entry.account_id:
                # Without a role, an entry naming another account would silently act in ours.
                try:
                    own_account = self._sts().get_caller_identity()["Account"]
                except (ClientError, BotoCoreError) as error:
                    raise classify(error, "sts GetCallerIdentity") from error
                if own_account != self.entry.account_id:
                    raise PermanentError(
                        f"account {self.entry.name}: registry names account "
                        f"{self.entry.account_id} but no role_arn, and the worker acts in "
                        "another account"
                    )
            self._credentials = {}
        return self._credentials

    def _sts(self) -> Any:
        """An STS client with the worker's own credentials."""
        return self._client("sts")


def client_factory(
    entry: AccountEntry,
    run_id: str,
    *,
    default_region: str,
    session: boto3.session.Session | None = None,
) -> Callable[[str], Any]:
    """The `client(service)` for a RunContext: acting in `entry`'s account and region
    (`entry.region`, else `default_region`), with the role assumed lazily for this run."""
    return AccountClients(entry, run_id, region=entry.region or default_region, session=session)
