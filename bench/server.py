"""moto's server in a process of its own: prints its port, serves until its stdin closes.

Its own process has its own interpreter lock, as a remote AWS would: the emulator's work does
not compete for the lock with the code being measured.

moto's WSGI application is served over HTTP/1.1 with keep-alive connections, as AWS serves
its APIs. `ThreadedMotoServer` (werkzeug's development server) closes the connection after
every response: each call would pay a TCP connection and a server thread, an emulator cost
that no AWS call has and that would dilute every ratio towards 1.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


def _patch_moto() -> None:
    """Take out an emulator cost that grows with the data (AWS's does not)."""
    from moto.sqs import models as sqs_models

    # moto reads a queue's ContentBasedDeduplication, for every message sent, by computing
    # all its attributes, the approximate counts among them (a pass over every message in
    # the queue): a send would cost more the fuller the queue. The bench never reads them.
    sqs_models.Queue.BASE_ATTRIBUTES = [
        name for name in sqs_models.Queue.BASE_ATTRIBUTES if not name.startswith("Approximate")
    ]


def handler_for(app: Callable[..., Any]) -> type[BaseHTTPRequestHandler]:
    """A keep-alive HTTP/1.1 request handler calling the WSGI application `app`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms ACK wait

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""  # drained: the next request
            url = urlsplit(self.path)
            host, _, port = (self.headers.get("Host") or "127.0.0.1").partition(":")
            # A TCP server's address is (host, port); the type also allows a Unix socket's path.
            address = self.server.server_address
            own_port = str(address[1]) if isinstance(address, tuple) else ""
            environ: dict[str, Any] = {
                "REQUEST_METHOD": self.command,
                "SCRIPT_NAME": "",
                "PATH_INFO": unquote(url.path),
                "QUERY_STRING": url.query,
                "RAW_URI": self.path,
                "REQUEST_URI": self.path,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(length),
                "SERVER_NAME": host,
                "SERVER_PORT": port or own_port,
                "SERVER_PROTOCOL": self.request_version,
                "REMOTE_ADDR": self.client_address[0],
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            for name, value in self.headers.items():
                key = "HTTP_" + name.upper().replace("-", "_")
                if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                    environ[key] = value if key not in environ else environ[key] + "," + value
            status: list[Any] = []

            def start_response(
                line: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Callable[[bytes], None]:
                status[:] = [line, headers]
                return lambda data: None

            result = app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            line, headers = status
            code, _, reason = line.partition(" ")
            self.send_response_only(int(code), reason)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    """Says nothing when a client gave up on a request (its read timeout, then a retry)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    """Serve on a free loopback port until stdin reaches end of file."""
    # The bench empties its queues between rounds; AWS allows a purge a minute, moto can
    # be told not to enforce that.
    os.environ["MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"] = "false"
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _patch_moto()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = QuietServer(
        ("127.0.0.1", 0), handler_for(DomainDispatcherApplication(create_backend_app))
    )
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
