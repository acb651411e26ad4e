"""The account registry: which AWS account and role each minion account acts in, and its runners."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

WILDCARD = "*"


class RegistryError(ValueError):
    """The account registry document is malformed; the message says where."""


@dataclass(frozen=True)
class AccountEntry:
    """One registry entry, resolved for the minion account `name`."""

    name: str
    runners: frozenset[str]
    account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    region: str | None = None

    def allows(self, runner: str) -> bool:
        """Whether this account may use `runner` (`*` in the list allows every runner)."""
        return runner in self.runners or WILDCARD in self.runners


@dataclass(frozen=True)
class Registry:
    """Registry entries by account name; `*` is the default for any other name."""

    entries: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_document(cls, document: str | Mapping[str, Any]) -> "Registry":
        """Parse `{"accounts": {name: entry}}` (a JSON string or an already-parsed mapping)."""
        data = json.loads(document) if isinstance(document, str) else document
        if not isinstance(data, Mapping) or not isinstance(data.get("accounts"), Mapping):
            raise RegistryError('account registry: expected {"accounts": {...}}')
        for name, entry in data["accounts"].items():
            if not isinstance(entry, Mapping):
                raise RegistryError(f"account registry: {name}: expected an object")
            runners = entry.get("runners", [])
            if not isinstance(runners, list) or not all(isinstance(r, str) for r in runners):
                raise RegistryError(f"account registry: {name}.runners: expected a list of names")
            for key in ("account_id", "role_arn", "external_id", "region"):
                if key in entry and not isinstance(entry[key], str):
                    raise RegistryError(f"account registry: {name}.{key}: expected a string")
        return cls(entries=dict(data["accounts"]))

    def get(self, account: str) -> AccountEntry | None:
        """The entry for `account` (or the `*` default), or None when the account is unknown."""
        entry = self.entries.get(account)
        if entry is None:
            entry = self.entries.get(WILDCARD)
        if entry is None:
            return None
        return AccountEntry(
            name=account,
            runners=frozenset(entry.get("runners", [])),
            account_id=entry.get("account_id"),
            role_arn=entry.get("role_arn"),
            external_id=entry.get("external_id"),
            region=entry.get("region"),
        )


def load_registry_document(document: str | None, path: str | None,
                           parameter: str | None) -> Registry:
    """The registry from inline JSON, a file, or an SSM parameter (cached 5 minutes)."""
    if document:
        return Registry.from_document(document)
    if path:
        with open(path, encoding="utf-8") as handle:
            return Registry.from_document(handle.read())
    if parameter:
        from aws_lambda_powertools.utilities import parameters

        return Registry.from_document(parameters.get_parameter(parameter, max_age=300))
    return Registry(entries={})
