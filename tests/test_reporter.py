"""The chat reporter: a run event, as EventBridge delivers it, posted to a webhook (a real
HTTP server on a free loopback port) in Slack's shape, with its settings from a secret; a
broken or slow webhook fails only the reporter, never leaks the URL, and changes nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from chalicelib.events import DETAIL_TYPE, SOURCE, EventPublisher, run_detail
from chalicelib.reporter import (
    Reporter,
    ReporterConfigError,
    WebhookConfig,
    WebhookFailed,
    handle_event,
    message_text,
)
from chalicelib.runs import Run

API_URL = "https://minion.example.edu/api"
SECRET_PATH = "/services/T000/B000/very-secret-token"


class Webhook:
    """A webhook endpoint on a free port: records the JSON bodies, answers `status` after
    `delay` seconds."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                time.sleep(hook.delay)
                try:
                    self.send_response(hook.status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the reporter gave up on a slow webhook, as it should

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def failed_run() -> Run:
    return Run(
        run_id="20260130T101800Z-s",
        job_id="6bcfa79f-615e-470d-97c1-687f3357497d",
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="2026-01-30T10:18:00Z",
        status="failed",
        finished_at="2026-01-30T10:18:05Z",
        attempts=3,
        error="instance not found",
        error_code="NotFound",
    )


def delivered(detail: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge hands it to the reporter function."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": "123456789012",
        "time": "2026-01-30T10:18:05Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def test_the_webhook_gets_slacks_body_with_the_secrets_channel_username_and_icon(
    aws: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities import parameters

    # Given the reporter's settings in a secret, as deployed
    secret = boto3.client("secretsmanager").create_secret(
        Name="minion/webhook",
        SecretString=json.dumps(
            {
                "endpoint": webhook.url,
                "channel": "#ops",
                "username": "minion",
                "icon": ":robot_face:",
            }
        ),
    )["ARN"]
    monkeypatch.setenv("MINION_WEBHOOK_SECRET_ID", secret)
    from chalicelib import deps

    deps.reset()
    parameters.clear_caches()
    # When a failed run's event is delivered to the reporter function
    detail = run_detail(failed_run(), "failed", None, API_URL)
    answer = handle_event(delivered(detail))
    # Then the webhook received one Slack-compatible message
    assert answer == {"reported": True}
    [body] = webhook.bodies
    assert {k: body[k] for k in ("channel", "username", "icon_emoji")} == {
        "channel": "#ops",
        "username": "minion",
        "icon_emoji": ":robot_face:",
    }
    assert set(body) == {"text", "channel", "username", "icon_emoji"}
    text = body["text"]
    assert text == message_text(detail)
    for part in (
        "6bcfa79f-615e-470d-97c1-687f3357497d",
        "spinup/space-xy",
        "failed",
        "20260130T101800Z-s",
        "attempt 3",
        "NotFound: instance not found",
        f"{API_URL}/v1/minion/spinup/jobs/space-xy/",
    ):
        assert part in text
    parameters.clear_caches()


def test_a_job_name_heads_the_message_and_a_bare_url_secret_posts_text_only(
    webhook: Webhook,
) -> None:
    # Given a secret holding the URL alone, and an event of a named job that succeeded
    reporter = Reporter(lambda: WebhookConfig.parse(webhook.url))
    run = Run(
        run_id="20260130T101800Z-s",
        job_id="j",
        account="spinup",
        group="g",
        trigger="manual",
        scheduled_for="2026-01-30T10:18:00Z",
        status="succeeded",
        attempts=1,
    )
    job_named = {**run_detail(run, "succeeded", None, ""), "job_name": "nightly-backup"}
    # When it is reported
    reporter.report(delivered(job_named))
    # Then the body is the text alone, naming the job
    [body] = webhook.bodies
    assert list(body) == ["text"]
    assert "job *nightly-backup* (spinup/g) succeeded" in body["text"]


@pytest.mark.parametrize("status, delay", [(500, 0.0), (404, 0.0), (200, 2.0)])
def test_a_broken_or_slow_webhook_fails_the_reporter_without_naming_the_url(
    webhook: Webhook,
    status: int,
    delay: float,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a webhook answering an error, or too slowly
    webhook.status, webhook.delay = status, delay
    reporter = Reporter(lambda: WebhookConfig.parse(webhook.url), timeout=0.5)
    # When an event is reported
    with pytest.raises(WebhookFailed) as raised:
        reporter.report(delivered(run_detail(failed_run(), "failed", None, API_URL)))
    # Then the reporter fails (Lambda retries the event), and neither the error nor the logs
    # hold the URL (its path is the credential)
    logs = capsys.readouterr().out + "".join(str(r.__dict__) for r in caplog.records)
    assert "run event not reported" in logs
    assert SECRET_PATH not in str(raised.value) and SECRET_PATH not in logs
    assert "very-secret" not in logs and "127.0.0.1" not in logs


def test_an_unreachable_webhook_fails_the_reporter(caplog: pytest.LogCaptureFixture) -> None:
    # Given a webhook on a port nobody listens on
    closed = Webhook()
    url = closed.url
    closed.close()
    reporter = Reporter(lambda: WebhookConfig.parse(url), timeout=0.5)
    # When an event is reported, Then the reporter fails without naming the URL
    with pytest.raises(WebhookFailed, match="unreachable"):
        reporter.report(delivered(run_detail(failed_run(), "failed", None, "")))
    assert caplog.records
    assert SECRET_PATH not in "".join(str(r.__dict__) for r in caplog.records)


def test_a_broken_webhook_changes_nothing_about_the_run_or_its_event(
    store: Any, aws: dict[str, Any], webhook: Webhook
) -> None:
    from chalicelib.store import Store

    # Given a failed run recorded, its event published and routed by a rule to a queue
    # (standing in for the reporter function's target), and a webhook answering 500
    assert isinstance(store, Store)
    run = failed_run()
    store.put_run(run)
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="reporter-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(
        Name="reporter", EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]})
    )
    events.put_targets(Rule="reporter", Targets=[{"Id": "q", "Arn": arn}])
    publisher = EventPublisher(events, api_url=API_URL)
    publisher.collect(run, None)
    assert publisher.flush() == 0
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    webhook.status = 500
    before = store.get_run(run.job_id, run.run_id)
    # When the reporter gets the event as EventBridge delivered it
    with pytest.raises(WebhookFailed):
        Reporter(lambda: WebhookConfig.parse(webhook.url)).report(json.loads(message["Body"]))
    # Then the webhook was tried with the run's message, and the run's record is unchanged
    assert len(webhook.bodies) == 1 and "20260130T101800Z-s" in webhook.bodies[0]["text"]
    assert store.get_run(run.job_id, run.run_id) == before


def test_an_event_that_is_not_a_runs_is_ignored(webhook: Webhook) -> None:
    reporter = Reporter(lambda: WebhookConfig.parse(webhook.url))
    assert reporter.report({"detail-type": "Scheduled Event", "detail": {}}) is None
    assert webhook.bodies == []


@pytest.mark.parametrize(
    "secret, problem",
    [
        ("", "endpoint: required"),
        ("{not json", "not valid JSON"),
        ("http://hooks.example.com/x", "expected an https:// URL"),
        ('{"endpoint": "https://hooks.example.com/x", "channel": 5}', "channel: expected a string"),
        ('{"channel": "#ops"}', "endpoint: required"),
    ],
)
def test_a_misshapen_secret_is_refused_saying_how(secret: str, problem: str) -> None:
    with pytest.raises(ReporterConfigError, match=problem) as raised:
        WebhookConfig.parse(secret)
    assert "hooks.example.com" not in str(raised.value)


def test_an_icon_url_is_sent_as_icon_url() -> None:
    from chalicelib.reporter import webhook_body

    config = WebhookConfig(
        endpoint="https://hooks.example.com/x", icon="https://example.com/minion.png"
    )
    body = webhook_body(run_detail(failed_run(), "failed", None, ""), config)
    assert body["icon_url"] == "https://example.com/minion.png" and "icon_emoji" not in body


def test_a_failing_job_reaches_chat_through_a_rule_and_its_run_is_unchanged(
    store: Any, queue: Any, aws: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import runners
    from chalicelib.accounts import Registry
    from chalicelib.jobs import job_from_request
    from chalicelib.queue import RunMessage
    from chalicelib.runners import PermanentError
    from chalicelib.worker import Worker, handle_batch
    from conftest import ACCOUNTS, drain, sqs_event, utc

    # Given a job whose instance is gone (its runner fails for good), created as the API does
    class Gone:
        name = "dummyRunner"

        def validate(self, details: Any) -> None:
            """Any details."""

        def run(self, details: Any, ctx: Any) -> Any:
            raise PermanentError("instance i-0abc not found", code="NotFound")

    monkeypatch.setitem(runners.RUNNERS, "dummyRunner", Gone())
    registry = Registry.from_document(ACCOUNTS)
    entry = registry.get("spinup")
    assert entry is not None
    job = job_from_request(
        {
            "name": "stop-dev-box",
            "schedule_expression": "0 3 * * *",
            "details": {"runner": "dummyRunner"},
        },
        account="spinup",
        group="space-xy",
        job_id=None,
        entry=entry,
        now=utc("2026-01-30T10:17:20"),
    )
    store.create_job(job)
    # And a rule on the default bus feeding the reporter's queue (as EventBridge feeds it)
    sqs = aws["sqs"]
    target = sqs.create_queue(QueueName="reporter-feed")["QueueUrl"]
    events = boto3.client("events")
    events.put_rule(
        Name="reporter", EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]})
    )
    events.put_targets(
        Rule="reporter",
        Targets=[
            {
                "Id": "q",
                "Arn": sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"],
            }
        ],
    )
    worker = Worker(
        store=store,
        queue=queue,
        registry=lambda: registry,
        clients=lambda entry, run_id: lambda service: None,
        clock=lambda: utc("2026-01-30T10:18:05"),
        events=EventPublisher(events, api_url=API_URL),
    )
    # When it is run now, and the reporter gets what the rule delivered
    run_id = "20260130T101800Z-m0123abcd"
    queue.send(
        RunMessage(
            account="spinup",
            group="space-xy",
            job_id=job.id,
            run_id=run_id,
            trigger="manual",
            scheduled_for="2026-01-30T10:18:00Z",
        )
    )
    store.put_run(
        Run(
            run_id=run_id,
            job_id=job.id,
            account="spinup",
            group="space-xy",
            trigger="manual",
            scheduled_for="2026-01-30T10:18:00Z",
            status="queued",
        )
    )
    assert handle_batch(sqs_event(drain(sqs, aws["queue_url"])), worker=worker) == {
        "batchItemFailures": []
    }
    recorded = store.get_run(job.id, run_id)
    [message] = drain(sqs, target)
    Reporter(lambda: WebhookConfig.parse(webhook.url)).report(json.loads(message["Body"]))
    # Then chat was told which job failed, why, and where to look
    [body] = webhook.bodies
    assert body["text"].startswith(
        f":x: minion: job *stop-dev-box* (spinup/space-xy) failed: run {run_id}"
    )
    assert "NotFound: instance i-0abc not found" in body["text"]
    assert body["text"].endswith(f"{API_URL}/v1/minion/spinup/jobs/space-xy/{job.id}/runs/{run_id}")
    # And the run's record is what the worker recorded, failed
    assert recorded.status == "failed" and store.get_run(job.id, run_id) == recorded
