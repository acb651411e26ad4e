"""Authentication by `X-Auth-Token`: plain pre-shared tokens, or (compat) a bcrypt hash of one."""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from typing import Callable, Sequence

MAX_TOKEN_LENGTH = 1024
# minion's Go clients sent bcrypt.GenerateFromPassword(token, DefaultCost=10). A header is
# attacker-chosen: a cost above this bound is refused unhashed, so no header can make a
# request slow (cost 31 would take days).
MAX_BCRYPT_COST = 12
BCRYPT_HEADER = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
CACHE_SIZE = 1024


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class TokenAuthenticator:
    """Checks a header against the currently configured tokens in constant time."""

    def __init__(self, tokens: Callable[[], Sequence[str]]) -> None:
        self._tokens = tokens
        # sha256(header) -> (fingerprint of the tokens it was checked against, sha256 of the
        # token it verified against or b"" when refused). Digests only: neither headers nor
        # tokens are kept in memory, and a rotation re-checks what was refused before.
        self._bcrypt_seen: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def is_valid(self, header: str | None) -> bool:
        """Whether `header` is one of the tokens, or a bcrypt hash of one of them."""
        if not header or len(header) > MAX_TOKEN_LENGTH or not header.isascii():
            return False
        presented = header.encode("ascii")
        tokens = [t.encode("utf-8") for t in self._tokens()]
        if not tokens:
            return False
        matched = False
        for token in tokens:  # every token compared, no early exit
            matched |= hmac.compare_digest(presented, token)
        if matched:
            return True
        bcrypt_match = BCRYPT_HEADER.match(presented)
        if bcrypt_match is None:
            return False
        return self._bcrypt_valid(presented, int(bcrypt_match.group(1)), tokens)

    def _bcrypt_valid(self, presented: bytes, cost: int, tokens: list[bytes]) -> bool:
        if not 4 <= cost <= MAX_BCRYPT_COST:
            return False
        key = _digest(presented)
        token_digests = {_digest(t) for t in tokens}
        fingerprint = _digest(b"".join(sorted(token_digests)))
        with self._lock:
            seen = self._bcrypt_seen.get(key)
            if seen is not None:
                self._bcrypt_seen.move_to_end(key)
        if seen is not None:
            seen_fingerprint, verified = seen
            if verified in token_digests:
                return True
            if seen_fingerprint == fingerprint:  # refused against these very tokens
                return False
        import bcrypt  # only the compat path pays for the import

        verified = b""
        for token in tokens:
            try:
                if bcrypt.checkpw(token, presented):
                    verified = _digest(token)
                    break
            except ValueError:
                break
        with self._lock:
            self._bcrypt_seen[key] = (fingerprint, verified)
            self._bcrypt_seen.move_to_end(key)
            while len(self._bcrypt_seen) > CACHE_SIZE:
                self._bcrypt_seen.popitem(last=False)
        return verified != b""


def secret_tokens(secret_value: str) -> list[str]:
    """Tokens from a secret: a JSON list, `{"tokens": [...]}`, or comma-separated text."""
    import json

    text = secret_value.strip()
    if text.startswith("[") or text.startswith("{"):
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("tokens", [])
        return [str(t).strip() for t in data if str(t).strip()]
    return [t.strip() for t in text.split(",") if t.strip()]
