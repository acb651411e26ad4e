"""The API on loopback: Chalice's own local server, answering unknown paths as the spec says."""

from __future__ import annotations

import json
import threading
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, LocalGatewayException


class MinionRequestHandler(ChaliceRequestHandler):
    """Chalice's handler, except that a path with no route answers 401 without a valid token
    and 404 with one (API Gateway's own answer is a 403 "Missing Authentication Token")."""

    # The headers and the body leave in two writes: with Nagle's algorithm on, the body waited
    # for the client's delayed ACK of the headers, 40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if error.CODE == 403 and b"Missing Authentication Token" in (error.body or b""):
            from chalicelib import deps

            if deps.authenticator().is_valid(self.headers.get("X-Auth-Token")):
                status, code, message = 404, "NotFoundError", "no such route"
            else:
                status, code, message = 401, "UnauthorizedError", "missing or invalid X-Auth-Token"
            body = json.dumps({"Code": code, "Message": message}).encode()
            self._send_http_response(status, {"Content-Type": "application/json"}, body)
            return
        super()._send_error_response(error)

    def log_message(self, format: str, *args: Any) -> None:
        """One access-log line per request (never headers, so never a token)."""
        super().log_message(format, *args)


def start_api(app: Any, port: int, host: str = "127.0.0.1") -> LocalDevServer:
    """Serve `app` on host:port in a background thread; the server (call .shutdown())."""
    from chalice.local import CustomLocalChalice, LocalChalice, create_local_server

    config = Config.create(
        chalice_stage="dev", app_name="minion", lambda_timeout=30, lambda_memory_size=512
    )
    if not isinstance(app, LocalChalice):  # done once: it changes the app's class in place
        create_local_server(app, config, host, port).server.server_close()
    assert isinstance(app, CustomLocalChalice)
    server = LocalDevServer(app, config, host, port, handler_cls=MinionRequestHandler)
    threading.Thread(target=server.server.serve_forever, daemon=True, name="api").start()
    return server
