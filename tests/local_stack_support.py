"""The local stack of `make run` in a subprocess, for the end-to-end tests; and the app
served in-process by Chalice's local server (local/server.py), for tests over real HTTP."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def served_api_url() -> str:
    """The base URL of Chalice's local server over the app, started once per process in a
    thread (`start_api` turns the app into a LocalChalice, which can be done only once). It
    holds no state: each request reads the current test's moto backend through `deps`."""
    import app as app_module
    from local.server import start_api

    server = start_api(app_module.app, 0)
    host, port = server.server.server_address[:2]
    return f"http://{host}:{port}"


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """A running local stack in a subprocess."""

    def __init__(self, state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port, self.aws_port = free_port(), free_port()
        self.state_dir = state_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINION_"))},
            "MINION_PORT": str(self.port),
            "MINION_AWS_PORT": str(self.aws_port),
            "MINION_STATE_DIR": str(state_dir),
            **(env or {}),
        }
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def base(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}/v1/minion"

    def start(self) -> Stack:
        """Start it and wait until it answers /ping."""
        # The output goes to a file, not a pipe: a pipe nobody reads fills up after a few
        # hundred requests' log lines and blocks the stack.
        self.log = self.state_dir.parent / f"stack-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.stack"],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.base + "/ping", timeout=1).text == "pong":
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("the local stack did not answer /ping within 60 s")

    def stop(self) -> int:
        """SIGTERM (what Ctrl-C does); the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            self.output = self.log.read_text()
        return code

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is flushed by the stack itself."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        self.output = self.log.read_text()

    def token(self) -> str:
        """The development token the stack wrote to its state directory."""
        return (self.state_dir / "dev-token").read_text().strip()

    def rss_mb(self) -> float:
        """The stack process's resident memory in MB (Linux)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = next(
            line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")
        )
        return int(kilobytes) / 1024

    def aws(self, service: str) -> Any:
        """A boto3 client of the stack's embedded AWS emulator."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.aws_port}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )


def headers(token: str) -> dict[str, str]:
    """The headers of an authenticated JSON request."""
    return {"X-Auth-Token": token, "Content-Type": "application/json"}


DUMMY_JOB = {
    "description": "Do some dumb thing to my server",
    "details": {"runner": "dummyRunner"},
    "group": "space-xy",
    "modified_by": "someone",
    "name": "dummy-spin1234567",
    "schedule_expression": "* * * ? *",
    "enabled": True,
}
