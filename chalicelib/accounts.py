"""The account registry: which AWS account and role each minion account acts in, and its runners.

The registry is validated entirely where it is loaded: a malformed document, an unknown key, a
bad account id or role ARN, a role without an ExternalId or not among the roles the worker may
assume is refused with a message naming the source (file or parameter) and the key. A refused
registry is a RegistryError: the API answers 503 with its message, the worker leaves its
messages for retry.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceUnavailable
from .runners.base import Scope

WILDCARD = "*"
ENTRY_KEYS = ("runners", "account_id", "role_arn", "external_id", "region")
ACCOUNT_ID = re.compile(r"\d{12}")
# IAM's role ARN: partition, 12-digit account, optional path, name of 1-64 characters.
ROLE_ARN = re.compile(
    r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}", re.ASCII
)
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
# STS's ExternalId alphabet. Generated ids (`secrets.token_urlsafe(24)`: 32 characters, or a
# uuid4: 36) pass; a word or a short phrase an operator types does not.
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{32,1224}", re.ASCII)
MIN_EXTERNAL_ID = 32
MIN_EXTERNAL_ID_SYMBOLS = 8


class RegistryError(ServiceUnavailable, ValueError):
    """The account registry cannot be used; the message names the source and the key.

    A 503: nothing a client sent is wrong, and the request succeeds once the registry is fixed.
    """


@dataclass(frozen=True)
class AccountEntry:
    """One registry entry, resolved for the minion account `name`.

    `key` is the registry key it came from: `name` itself, or `*` for the default entry.
    `job_details` is set per run by the worker: the run's credentials are limited to the
    resources those details name (an IAM session policy, see credentials.py).
    """

    name: str
    runners: frozenset[str]
    account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    region: str | None = None
    key: str = ""
    job_details: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def is_default(self) -> bool:
        """Whether the account has no entry of its own and got the `*` entry's."""
        return self.key == WILDCARD

    def scope(self, default_region: str, own_account: str | None = None) -> Scope:
        """Where this entry's runners act: its role's partition, its account (else
        `own_account`, the stack's, when known) and its region (else `default_region`)."""
        match = ROLE_ARN.fullmatch(self.role_arn or "")
        return Scope(
            partition=match.group(1) if match else "aws",
            account_id=self.account_id or own_account,
            region=self.region or default_region,
            own_account=self.account_id is None and own_account is not None,
        )

    def allows(self, runner: str) -> bool:
        """Whether this account may use `runner` (`*` in the list allows every runner)."""
        return runner in self.runners or WILDCARD in self.runners


@dataclass(frozen=True)
class Registry:
    """Registry entries by account name; `*` is the default for any other name."""

    entries: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_document(
        cls,
        document: str | Mapping[str, Any],
        *,
        source: str = "account registry",
        allowed_roles: Iterable[str] | None = None,
    ) -> Registry:
        """Parse and validate `{"accounts": {name: entry}}` (JSON text or a parsed mapping).

        `source` names where it came from in every message. `allowed_roles` are the role ARNs
        the worker may assume (MINION_RUNNER_ROLE_ARNS); None skips that check (tests of other
        parts that build a registry by hand); an empty list refuses every role.
        """
        data = _parse(document, source) if isinstance(document, str) else document
        if not isinstance(data, Mapping) or not isinstance(data.get("accounts"), Mapping):
            raise RegistryError(f'{source}: expected {{"accounts": {{...}}}}')
        for top in data:
            if top != "accounts":
                raise RegistryError(f"{source}: {top}: unknown key (expected only accounts)")
        roles = None if allowed_roles is None else frozenset(allowed_roles)
        external_ids: dict[str, str] = {}
        for name, entry in data["accounts"].items():
            _check_entry(source, str(name), entry, roles, external_ids)
        return cls(entries=dict(data["accounts"]))

    def get(self, account: str) -> AccountEntry | None:
        """The entry for `account` (or the `*` default), or None when the account is unknown."""
        key = account if account in self.entries else WILDCARD
        entry = self.entries.get(key)
        if entry is None:
            return None
        return AccountEntry(
            name=account,
            runners=frozenset(entry.get("runners", [])),
            account_id=entry.get("account_id"),
            role_arn=entry.get("role_arn"),
            external_id=entry.get("external_id"),
            region=entry.get("region"),
            key=key,
        )


def _parse(text: str, source: str) -> Any:
    """The JSON document; RegistryError with the line and column of a syntax error, or the
    name of a key given twice (JSON would keep the last one silently)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise RegistryError(f"{source}: {key}: given twice")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as error:
        raise RegistryError(
            f"{source}: malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise RegistryError(f"{source}: malformed JSON: nested too deeply") from None


def _check_entry(
    source: str, name: str, entry: Any, roles: frozenset[str] | None, external_ids: dict[str, str]
) -> None:
    """Raise RegistryError for the first broken rule of one entry; the message never holds the
    external id itself (it is a shared secret of sorts)."""
    where = f"{source}: accounts.{name}"
    if name != WILDCARD and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise RegistryError(f"{where}: not an account name (1-64 of A-Z a-z 0-9 . _ -)")
    if not isinstance(entry, Mapping):
        raise RegistryError(f"{where}: expected an object")
    for key in entry:
        if key not in ENTRY_KEYS:
            close = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RegistryError(
                f"{where}.{key}: unknown key{hint}; expected {', '.join(ENTRY_KEYS)}"
            )
    for key in ENTRY_KEYS[1:]:
        if key in entry and not isinstance(entry[key], str):
            raise RegistryError(f"{where}.{key}: expected a string")
    _check_runners(where, entry.get("runners", []))
    account_id, role_arn = entry.get("account_id"), entry.get("role_arn")
    external_id, region = entry.get("external_id"), entry.get("region")
    if region is not None and not REGION.fullmatch(region):
        raise RegistryError(f"{where}.region: {region!r} is not an AWS region name")
    if account_id is not None and not ACCOUNT_ID.fullmatch(account_id):
        raise RegistryError(f"{where}.account_id: expected 12 digits")
    if name == WILDCARD:
        # A default role would let any account name act in that role's account, including an
        # account whose own entry was removed.
        for key in ("role_arn", "external_id", "account_id"):
            if key in entry:
                raise RegistryError(
                    f"{where}.{key}: the * entry cannot name an account or "
                    "role; give the account an entry of its own"
                )
        return
    if role_arn is None:
        if external_id is not None:
            raise RegistryError(f"{where}.external_id: only with role_arn")
        return
    match = ROLE_ARN.fullmatch(role_arn)
    if not match:
        raise RegistryError(
            f"{where}.role_arn: not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)"
        )
    if account_id is None:
        raise RegistryError(f"{where}.account_id: required with role_arn")
    if match.group(2) != account_id:
        raise RegistryError(
            f"{where}.role_arn: the role is in account {match.group(2)}, "
            f"not in account_id {account_id}"
        )
    _check_external_id(where, external_id)
    assert external_id is not None
    other = external_ids.setdefault(external_id, account_id)
    if other != account_id:
        raise RegistryError(
            f"{where}.external_id: also used for account {other}; generate one per account"
        )
    if roles is not None and role_arn not in roles:
        raise RegistryError(
            f"{where}.role_arn: not among the runner roles the worker may "
            "assume (MINION_RUNNER_ROLE_ARNS, the stack's RunnerRoleArns)"
        )


def _check_runners(where: str, runners: Any) -> None:
    from .runners import RUNNERS

    if not isinstance(runners, list) or not all(isinstance(r, str) for r in runners):
        raise RegistryError(f"{where}.runners: expected a list of runner names")
    for index, runner in enumerate(runners):
        if runner != WILDCARD and runner not in RUNNERS:
            raise RegistryError(
                f"{where}.runners[{index}]: unknown runner {runner!r} "
                f"(expected * or one of {', '.join(sorted(RUNNERS))})"
            )


def _check_external_id(where: str, external_id: str | None) -> None:
    rule = (
        f"at least {MIN_EXTERNAL_ID} characters of A-Z a-z 0-9 _ + = , . @ : / -, "
        "generated (python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    )
    if external_id is None:
        raise RegistryError(f"{where}.external_id: required with role_arn: {rule}")
    if not EXTERNAL_ID.fullmatch(external_id) or len(set(external_id)) < MIN_EXTERNAL_ID_SYMBOLS:
        raise RegistryError(f"{where}.external_id: expected {rule}")


def names_an_account(details: Mapping[str, str]) -> bool:
    """Whether any detail holds an account id (12 digits): only then does checking it need
    the stack's own account."""
    return any(re.search(r"(?<!\d)\d{12}(?!\d)", value) for value in details.values())


def load_registry_document(
    document: str | None,
    path: str | None,
    parameter: str | None,
    allowed_roles: Iterable[str] | None = (),
) -> Registry:
    """The registry from inline JSON, a file, or an SSM parameter (cached 5 minutes);
    RegistryError naming the source when it cannot be read or is invalid."""
    if document:
        return Registry.from_document(
            document, source="MINION_ACCOUNTS", allowed_roles=allowed_roles
        )
    if path:
        source = f"MINION_ACCOUNTS_FILE {path}"
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise RegistryError(f"{source}: cannot be read ({reason})") from None
        return Registry.from_document(text, source=source, allowed_roles=allowed_roles)
    if parameter:
        return Registry.from_document(
            _parameter(parameter), source=f"SSM parameter {parameter}", allowed_roles=allowed_roles
        )
    return Registry(entries={})


def _parameter(name: str) -> str:
    """The SSM parameter's value; RegistryError with the AWS error code when it cannot be read
    (missing, access denied, throttled): the raw message names ARNs and goes to the log only."""
    from aws_lambda_powertools.utilities import parameters

    from .observability import logger

    try:
        value = parameters.get_parameter(name, max_age=300)
    except parameters.exceptions.GetParameterError as error:
        # Powertools keeps only botocore's text: "An error occurred (<code>) when calling ..."
        found = re.search(r"An error occurred \((\w+)\)", str(error))
        code = found.group(1) if found else type(error).__name__
        logger.error(
            "account registry parameter not read",
            extra={"parameter": name, "error_code": code, "reason": str(error)},
        )
        hint = " (create it: docs/deploying.md)" if code == "ParameterNotFound" else ""
        raise RegistryError(f"SSM parameter {name}: cannot be read: {code}{hint}") from None
    return str(value)
