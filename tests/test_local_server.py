"""local/server.py overrides private methods of Chalice's local server: these tests fail
loudly, naming what to re-check, when a Chalice upgrade moves what it relies on."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from chalice import local as chalice_local

from local.server import MinionRequestHandler

ROOT = Path(__file__).resolve().parent.parent
UPGRADE = (
    "local/server.py overrides ChaliceRequestHandler._send_error_response, a private "
    "method; re-check it against this Chalice version, then update this test"
)


def test_chalice_is_the_version_the_override_was_written_against() -> None:
    # Given the pinned Chalice / Then the installed one is it: a new pin re-reads the override
    [pinned] = re.findall(
        r"^chalice==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE
    )
    assert version("chalice") == pinned == "1.34.0", UPGRADE


def test_the_private_methods_the_override_uses_keep_their_shape() -> None:
    handler = chalice_local.ChaliceRequestHandler
    # The method overridden, and the one it calls to answer
    assert list(inspect.signature(handler._send_error_response).parameters) == ["self", "error"], (
        UPGRADE
    )
    assert list(inspect.signature(handler._send_http_response).parameters) == [
        "self",
        "code",
        "headers",
        "body",
    ], UPGRADE
    assert MinionRequestHandler._send_error_response is not handler._send_error_response
    # And the exception it reads: API Gateway's 403 for a path without a route, with its body
    forbidden = chalice_local.ForbiddenError({}, b'{"message": "Missing Authentication Token"}')
    assert isinstance(forbidden, chalice_local.LocalGatewayException), UPGRADE
    assert (forbidden.CODE, forbidden.body) == (
        403,
        b'{"message": "Missing Authentication Token"}',
    ), UPGRADE
    assert b"Missing Authentication Token" in inspect.getsource(chalice_local).encode(), UPGRADE
