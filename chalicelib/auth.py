"""Authentication by `X-Auth-Token`: plain pre-shared tokens, or (compat) a bcrypt hash of one,
each token optionally scoped to some accounts and to reading only.

The tokens come from one text (the Secrets Manager secret, or `MINION_TOKENS` locally) in one
of the documented shapes (docs/operations.md, "API tokens"):

- comma-separated tokens: `tok1,tok2` (each may use every account, read and write);
- a JSON list of entries: `["tok1", {"token": "tok2", "accounts": ["a"], "read_only": true}]`;
- the same list under `{"tokens": [...]}`.

Anything else grants nothing (fail closed): a mistake in the secret must lock every client out
loudly, never let in every one-character header as a string iterated letter by letter did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_TOKEN_LENGTH = 1024
# A token is a shared secret, guessed online one request at a time: 16 characters of
# `secrets.token_urlsafe` are 96 bits. The bound refuses placeholders ("changeme", "test") and
# the one-character tokens a misread secret produced; the generated token has 32.
MIN_TOKEN_LENGTH = 16
MAX_TOKENS = 100
MAX_ACCOUNTS_PER_TOKEN = 100
# minion's Go clients sent bcrypt.GenerateFromPassword(token, DefaultCost=10). A header is
# attacker-chosen and unauthenticated: a cost above theirs is refused unhashed, so a header
# costs at most one cost-10 hash per configured token (cost 31 would take days).
MAX_BCRYPT_COST = 10
# bcrypt reads at most 72 bytes of a password (bcrypt 5 raises beyond): a longer token can only
# be sent plain, and Go's bcrypt refuses to hash it too.
BCRYPT_MAX_PASSWORD = 72
BCRYPT_HEADER = re.compile(rb"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# Visible ASCII but for the separator "," and the quotes, brackets and backslash of JSON: a
# token starting with `"` or `[` is a JSON document gone wrong, not a token.
TOKEN_TEXT = re.compile(r"[A-Za-z0-9!#$%&()*+./:;<=>?@^_`|~-]+")
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENTRY_KEYS = frozenset({"token", "accounts", "read_only", "name"})
CACHE_SIZE = 1024
INVALID_REPORT_INTERVAL = 60.0


class TokenConfigError(ValueError):
    """The configured tokens are not in a documented shape; the message never holds a token."""


@dataclass(frozen=True)
class Grant:
    """What one token may do: every account (`accounts` None) or the named ones; write or not."""

    token: str
    accounts: frozenset[str] | None = None
    read_only: bool = False

    def __repr__(self) -> str:  # never print the token, even by accident
        return (
            f"Grant(accounts={sorted(self.accounts) if self.accounts else None}, "
            f"read_only={self.read_only})"
        )

    def may_use(self, account: str) -> bool:
        """Whether the token may act on `account` at all."""
        return self.accounts is None or account in self.accounts

    def may_see(self, accounts: Sequence[str]) -> list[str]:
        """The accounts of `accounts` this token may see."""
        return [a for a in accounts if self.may_use(a)]


def _check_token(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TokenConfigError(f"{where}: a token must be a string, got {type(value).__name__}")
    if not MIN_TOKEN_LENGTH <= len(value) <= MAX_TOKEN_LENGTH:
        raise TokenConfigError(
            f"{where}: a token must be {MIN_TOKEN_LENGTH}-{MAX_TOKEN_LENGTH} "
            f"characters, got {len(value)}"
        )
    if not TOKEN_TEXT.fullmatch(value):
        raise TokenConfigError(
            f"{where}: a token may hold only visible ASCII characters, "
            "no space, comma, quote, bracket, brace or backslash"
        )
    return value


def _grant(entry: Any, where: str) -> Grant:
    if isinstance(entry, str):
        return Grant(_check_token(entry, where))
    if not isinstance(entry, dict):
        raise TokenConfigError(
            f"{where}: expected a token or an object, got {type(entry).__name__}"
        )
    if set(entry) - ENTRY_KEYS:  # a misspelt "accounts" must not grant every account
        # The key is not quoted: it may be a token written as a key.
        raise TokenConfigError(
            f"{where}: an unknown key (expected only {', '.join(sorted(ENTRY_KEYS))})"
        )
    if "token" not in entry:
        raise TokenConfigError(f'{where}: "token" is required')
    token = _check_token(entry["token"], f"{where}.token")
    read_only = entry.get("read_only", False)
    if not isinstance(read_only, bool):
        raise TokenConfigError(f"{where}.read_only: expected true or false")
    if "name" in entry and not isinstance(entry["name"], str):
        raise TokenConfigError(f"{where}.name: expected a string")
    accounts = None
    if "accounts" in entry:
        names = entry["accounts"]
        if not isinstance(names, list) or not names or len(names) > MAX_ACCOUNTS_PER_TOKEN:
            raise TokenConfigError(
                f"{where}.accounts: expected a list of 1-{MAX_ACCOUNTS_PER_TOKEN} account names"
            )
        for index, name in enumerate(names):
            if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name):
                raise TokenConfigError(f"{where}.accounts[{index}]: not an account name")
        accounts = frozenset(names)
    return Grant(token, accounts, read_only)


def parse_tokens(text: str) -> tuple[Grant, ...]:
    """The grants of a tokens text in a documented shape; TokenConfigError for anything else."""
    text = text.strip()
    if not text:
        raise TokenConfigError("no token is configured")
    if text[0] in "[{":
        try:
            document = json.loads(text)
        except ValueError:
            raise TokenConfigError("malformed JSON") from None  # its message may quote a token
        if isinstance(document, dict):
            if set(document) != {"tokens"}:
                raise TokenConfigError('expected an object with the one key "tokens"')
            document = document["tokens"]
            if not isinstance(document, list):
                # What the Secrets Manager console's key/value editor saves.
                raise TokenConfigError(
                    '"tokens" must be a JSON list, got '
                    f"{type(document).__name__} (store the secret as "
                    "plaintext, not as key/value pairs)"
                )
        entries = document
        where = "tokens[{}]"
    else:
        entries = [t.strip() for t in text.split(",")]
        where = "token {} of the comma-separated list"
    if not entries or len(entries) > MAX_TOKENS:
        raise TokenConfigError(f"expected 1-{MAX_TOKENS} tokens, got {len(entries)}")
    grants = tuple(_grant(entry, where.format(i)) for i, entry in enumerate(entries))
    if len({g.token for g in grants}) != len(grants):
        raise TokenConfigError("the same token is listed twice")
    return grants


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class TokenAuthenticator:
    """Checks a header against the currently configured tokens in constant time."""

    def __init__(
        self,
        tokens: Callable[[], str],
        *,
        bcrypt_enabled: bool = True,
        on_invalid: Callable[[str], None] | None = None,
    ) -> None:
        self._tokens_text = tokens
        self._bcrypt_enabled = bcrypt_enabled
        self._on_invalid = on_invalid
        # Parsed once per distinct text (the secret is re-read every few minutes).
        self._parsed: tuple[bytes, tuple[Grant, ...] | None, str] | None = None
        self._last_report = -INVALID_REPORT_INTERVAL
        # sha256(header) -> (fingerprint of the tokens it was checked against, sha256 of the
        # token it verified against or b"" when refused). Digests only: neither headers nor
        # tokens are kept in memory, and a rotation re-checks what was refused before.
        self._bcrypt_seen: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def grants(self) -> tuple[Grant, ...] | None:
        """The configured grants, or None when the configuration is misshapen (reported)."""
        text = self._tokens_text()
        key = _digest(text.encode("utf-8", "surrogatepass"))
        parsed = self._parsed
        if parsed is None or parsed[0] != key:
            try:
                grants: tuple[Grant, ...] | None = parse_tokens(text)
                problem = ""
            except TokenConfigError as error:
                grants, problem = None, str(error)
            parsed = self._parsed = (key, grants, problem)
            if grants is None:
                self._report(problem, force=True)
                return None
        if parsed[1] is None:
            self._report(parsed[2], force=False)
        return parsed[1]

    def _report(self, problem: str, *, force: bool) -> None:
        """Tell the operator (log + metric), at most once a minute while it lasts."""
        now = time.monotonic()
        if self._on_invalid is None or (
            not force and now - self._last_report < INVALID_REPORT_INTERVAL
        ):
            return
        self._last_report = now
        self._on_invalid(problem)

    def authenticate(self, header: str | None) -> Grant | None:
        """The grant of the token `header` is (or is a bcrypt hash of), else None."""
        if not header or len(header) > MAX_TOKEN_LENGTH or not header.isascii():
            return None
        grants = self.grants()
        if not grants:
            return None
        presented = header.encode("ascii")
        tokens = [g.token.encode("ascii") for g in grants]
        matched = -1
        for index, token in enumerate(tokens):  # every token compared, no early exit
            if hmac.compare_digest(presented, token):
                matched = index
        if matched >= 0:
            return grants[matched]
        if not self._bcrypt_enabled:
            return None
        bcrypt_match = BCRYPT_HEADER.fullmatch(presented)
        if bcrypt_match is None:
            return None
        verified = self._bcrypt_verified(presented, int(bcrypt_match.group(1)), tokens)
        if verified is None:
            return None
        return next(g for g, t in zip(grants, tokens, strict=True) if _digest(t) == verified)

    def is_valid(self, header: str | None) -> bool:
        """Whether `header` is one of the tokens, or a bcrypt hash of one of them."""
        return self.authenticate(header) is not None

    def _bcrypt_verified(self, presented: bytes, cost: int, tokens: list[bytes]) -> bytes | None:
        """The digest of the token the bcrypt header verifies against, else None."""
        if not 4 <= cost <= MAX_BCRYPT_COST:
            return None
        key = _digest(presented)
        token_digests = {_digest(t) for t in tokens}
        fingerprint = _digest(b"".join(sorted(token_digests)))
        with self._lock:
            seen = self._bcrypt_seen.get(key)
            if seen is not None:
                self._bcrypt_seen.move_to_end(key)
        if seen is not None:
            seen_fingerprint, seen_verified = seen
            if seen_verified in token_digests:
                return seen_verified
            if seen_fingerprint == fingerprint:  # refused against these very tokens
                return None
        import bcrypt  # only the compat path pays for the import

        verified = b""
        # Every token bcrypt can hash is checked, whichever matches: the time does not depend
        # on the order of the tokens, and one token bcrypt refuses cannot stop the others.
        for token in tokens:
            if len(token) > BCRYPT_MAX_PASSWORD:
                continue
            try:
                if bcrypt.checkpw(token, presented):
                    verified = _digest(token)
            except ValueError:
                continue
        with self._lock:
            self._bcrypt_seen[key] = (fingerprint, verified)
            self._bcrypt_seen.move_to_end(key)
            while len(self._bcrypt_seen) > CACHE_SIZE:
                self._bcrypt_seen.popitem(last=False)
        return verified or None
