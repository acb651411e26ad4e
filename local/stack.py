"""`make run`: moto's server, the API, the tick loop and the worker loop in one process.

Everything runs on loopback. Every boto3 client finds the emulator through the standard
`AWS_ENDPOINT_URL` (set here before anything creates a client), so the service's code has
no local special case. The embedded emulator journals every change of the table and the
queues to the state directory before it answers (local/state.py), and restores them at start:
what the stack answered 2xx for survives a restart, kill -9 included. A lock file gives the
state directory one stack at a time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.state import LocalState, StateDirInUse, lock_state_dir

ROOT = Path(__file__).resolve().parent.parent
MAINTENANCE_SECONDS = 10
TTL_ATTRIBUTE = "expires_at"  # infra/minion.yaml's TimeToLiveSpecification
LOCAL_VISIBILITY_TIMEOUT = 180  # above the worker's lease (runner timeout + margin)
MAX_RECEIVES = 5


@dataclass(frozen=True)
class LocalConfig:
    """The local stack's settings, all optional."""

    port: int
    aws_port: int
    state_dir: Path
    tokens: tuple[str, ...]
    token_generated: bool
    accounts_file: str | None
    endpoint: str | None
    worker: bool = True

    @classmethod
    def from_env(cls) -> LocalConfig:
        """Read MINION_PORT, MINION_AWS_PORT, MINION_TOKENS, MINION_ACCOUNTS_FILE,
        MINION_STATE_DIR and MINION_WORKER."""
        state_dir = Path(os.environ.get("MINION_STATE_DIR") or ROOT / ".minion")
        state_dir.mkdir(parents=True, exist_ok=True)
        tokens = tuple(
            t.strip() for t in os.environ.get("MINION_TOKENS", "").split(",") if t.strip()
        )
        generated = False
        if not tokens:
            token_file = state_dir / "dev-token"
            if not token_file.exists():
                token_file.write_text("dev-" + secrets.token_urlsafe(18) + "\n")
                token_file.chmod(0o600)
            tokens = (token_file.read_text().strip(),)
            generated = True
        return cls(
            port=_port("MINION_PORT", 8000),
            aws_port=_port("MINION_AWS_PORT", 5000),
            state_dir=state_dir,
            tokens=tokens,
            token_generated=generated,
            accounts_file=os.environ.get("MINION_ACCOUNTS_FILE") or None,
            endpoint=os.environ.get("AWS_ENDPOINT_URL") or None,
            worker=_switch("MINION_WORKER"),
        )


def _switch(name: str) -> bool:
    raw = os.environ.get(name, "on").strip().lower() or "on"
    if raw not in ("on", "off"):
        sys.exit(f"{name}: expected on or off, got {raw!r}")
    return raw == "on"


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        sys.exit(f"{name}: expected a port number, got {raw!r}")
    return int(raw)


def _check_free(port: int, what: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(
                f"port {port} ({what}) is in use: stop what holds it, or set "
                f"{'MINION_PORT' if what == 'API' else 'MINION_AWS_PORT'}"
            )


def _git_hash() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def configure_environment(config: LocalConfig) -> dict[str, str]:
    """The service's environment for the local stack (before any boto3 client exists)."""
    from chalicelib.runners import RUNNERS

    env = {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ENDPOINT_URL": config.endpoint or f"http://127.0.0.1:{config.aws_port}",
        "MINION_TABLE": "minion",
        "MINION_QUEUE_NAME": "minion-runs",
        "MINION_TICK_PARTS_QUEUE_NAME": "minion-tick-parts",
        "MINION_TOKENS": ",".join(config.tokens),
        "MINION_GITHASH": _git_hash(),
        "MINION_BUILDSTAMP": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "POWERTOOLS_METRICS_NAMESPACE": "Minion",
        "POWERTOOLS_SERVICE_NAME": "minion",
        # Run events link to the run in this API (local/events.py prints them).
        "MINION_API_URL": f"http://127.0.0.1:{config.port}",
    }
    if config.accounts_file:
        env["MINION_ACCOUNTS_FILE"] = config.accounts_file
    else:  # any account name, every runner, acting in the emulator's default account
        env["MINION_ACCOUNTS"] = json.dumps({"accounts": {"*": {"runners": sorted(RUNNERS)}}})
    os.environ.update(env)
    return env


class LocalContext:
    """The Lambda context handed to the handlers (the fields Powertools reads)."""

    def __init__(self, function_name: str, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:minion-local-{function_name}"
        )
        self.log_group_name = f"/aws/lambda/minion-local-{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def create_resources() -> str:
    """The table (and due index) and the runs queue with its DLQ; the queue URL."""
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.store import table_definition

    settings = get_settings()
    dynamodb = boto3.client("dynamodb")
    if settings.table_name not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(**table_definition(settings.table_name))
    ttl = dynamodb.describe_time_to_live(TableName=settings.table_name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") != "ENABLED":  # as infra/minion.yaml's table: runs expire
        dynamodb.update_time_to_live(
            TableName=settings.table_name,
            TimeToLiveSpecification={"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        )
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName=settings.queue_name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return str(
        sqs.create_queue(
            QueueName=settings.queue_name,
            Attributes={
                "VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
                ),
            },
        )["QueueUrl"]
    )


def create_tick_parts_queue() -> str:
    """The tick parts queue (the scheduled tick fans each minute out on it); its URL."""
    import boto3

    from chalicelib.settings import get_settings

    return str(
        boto3.client("sqs").create_queue(
            QueueName=get_settings().tick_parts_queue_name,
            Attributes={"VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT)},
        )["QueueUrl"]
    )


def tick_loop(stop: threading.Event, handler: Any) -> None:
    """At each minute boundary, invoke the tick with a real scheduled-event payload.

    Like EventBridge's asynchronous invoke, a tick that raises is retried (twice).
    """
    while not stop.is_set():
        now = time.time()
        minute = int(now // 60 + 1) * 60
        if stop.wait(minute - now):
            return
        stamp = datetime.fromtimestamp(minute, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": stamp,
            "region": os.environ["AWS_DEFAULT_REGION"],
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/minion-local-tick"],
            "detail": {},
        }
        for attempt in range(3):
            try:
                handler(event, LocalContext("tick", 120))
                break
            except Exception as error:  # the platform's retry, as in AWS
                print(f"tick {stamp} failed (attempt {attempt + 1}): {error}", file=sys.stderr)
                if stop.wait(2**attempt):
                    return


def worker_loop(stop: threading.Event, handler: Any, queue_url: str) -> None:
    """Long-poll the queue and invoke the worker with real SQS event payloads.

    As Lambda's event source mapping does: items reported in `batchItemFailures` stay on
    the queue (back after the visibility timeout, to the DLQ after MAX_RECEIVES); the rest
    are deleted.
    """
    import boto3

    sqs = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    while not stop.is_set():
        try:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        except Exception as error:
            if stop.is_set():
                return
            print(f"worker: receive failed: {error}", file=sys.stderr)
            stop.wait(1)
            continue
        if not messages:
            continue
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": os.environ["AWS_DEFAULT_REGION"],
                }
                for m in messages
            ]
        }
        try:
            result = handler(event, LocalContext("worker", 120)) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception as error:  # the whole batch failed: every message comes back
            print(f"worker: batch failed: {error}", file=sys.stderr)
            continue
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )


def main() -> None:
    """Run the stack until Ctrl-C or SIGTERM."""
    config = LocalConfig.from_env()
    try:
        state_lock = lock_state_dir(config.state_dir)  # held until the process ends
    except StateDirInUse as error:
        sys.exit(str(error))
    _check_free(config.port, "API")
    if config.endpoint is None:
        _check_free(config.aws_port, "AWS emulator")
    configure_environment(config)
    sys.path.insert(0, str(ROOT))
    from chalicelib import deps

    try:  # a broken registry stops the start, naming the file and the key (issue 13)
        deps.registry()
    except ValueError as error:
        sys.exit(f"minion: {error}")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per emulated AWS call
    moto_server = state = None
    if config.endpoint is None:
        from local.emulator import EmbeddedMotoServer

        state = LocalState(config.state_dir, os.environ["AWS_DEFAULT_REGION"])
        moto_server = EmbeddedMotoServer(config.aws_port, state.wrap)
        moto_server.start()

    queue_url = create_resources()
    tick_parts_url = create_tick_parts_queue()
    items, messages = state.restore() if state is not None else (0, 0)
    from local import events as local_events

    events_url = local_events.create_display()

    import app as app_module
    from local.server import start_api

    api = start_api(app_module.app, config.port)
    threads = [
        threading.Thread(target=tick_loop, args=(stop, app_module.tick), daemon=True, name="tick"),
        threading.Thread(
            target=local_events.display_loop, args=(stop, events_url), daemon=True, name="events"
        ),
        # The tick's parts, driven like Lambda's event source drives the part-tick.
        threading.Thread(
            target=worker_loop,
            args=(stop, app_module.tick_part, tick_parts_url),
            daemon=True,
            name="tick-parts",
        ),
    ]
    if config.worker:
        threads.append(
            threading.Thread(
                target=worker_loop,
                args=(stop, app_module.worker, queue_url),
                daemon=True,
                name="worker",
            )
        )
        threads.append(
            threading.Thread(
                target=tick_loop, args=(stop, app_module.sweep), daemon=True, name="sweep"
            )
        )
    for thread in threads:
        thread.start()

    base = f"http://127.0.0.1:{config.port}/v1/minion"
    if state is not None:
        print(
            f"minion is running (restored {items} items and {messages} queued messages "
            f"from {config.state_dir})"
        )
    else:
        print(f"minion is running (state kept by {config.endpoint})")
    print(f"  API:          {base}   (try: curl {base}/ping)")
    print(f"  AWS emulator: {os.environ['AWS_ENDPOINT_URL']}")
    if config.token_generated:
        print(
            f"  token:        {config.tokens[0]}   (development token, also in "
            f"{config.state_dir}/dev-token; set MINION_TOKENS to choose your own)"
        )
    else:
        print("  token:        one of MINION_TOKENS")
    print(f"  authenticate: curl -H 'X-Auth-Token: <token>' {base}/<account>/jobs")
    if not config.worker:
        print("  worker:       off (MINION_WORKER=off): runs stay queued")
    print(
        "  run events:   one `event ...` line each, as EventBridge would receive them "
        "(outcomes: a job's notify, else MINION_NOTIFY_DEFAULT)"
    )
    print("Press Ctrl-C to stop.", flush=True)

    while not stop.wait(MAINTENANCE_SECONDS):
        if state is not None:
            try:
                state.maintain(time.time())
            except Exception as error:
                print(f"state maintenance failed: {error}", file=sys.stderr)
    print("stopping...", flush=True)
    api.shutdown()
    for thread in threads:
        thread.join(timeout=5)
    if state is not None:
        state.close()
    if moto_server is not None:
        moto_server.stop()
    state_lock.close()
    print("stopped.", flush=True)


if __name__ == "__main__":
    main()
