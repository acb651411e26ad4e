"""`make run`'s view of the run events: what production would send to EventBridge.

The service publishes to the emulator's default bus exactly as in AWS; a rule there sends
minion's events to a queue, and a loop prints each as one line a person can read.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

QUEUE_NAME = "minion-local-run-events"
RULE_NAME = "minion-local-run-events"


def create_display() -> str:
    """The rule on the emulator's default bus and its target queue; the queue's URL."""
    import boto3

    from chalicelib.events import DETAIL_TYPE, SOURCE

    sqs = boto3.client("sqs")
    url = str(sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(
        Name=RULE_NAME, EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]})
    )
    events.put_targets(Rule=RULE_NAME, Targets=[{"Id": "display", "Arn": arn}])
    return url


def event_line(event: dict[str, Any]) -> str:
    """One readable line for a run event, its detail in full after the summary."""
    detail = event.get("detail") or {}
    name = detail.get("job_name") or detail.get("job_id")
    summary = (
        f"event {event.get('detail-type')}: {detail.get('status')} "
        f"{detail.get('account')}/{detail.get('group')}/{name} "
        f"run {detail.get('run_id')} attempt {detail.get('attempts')}"
    )
    if detail.get("error"):
        summary += f" ({detail.get('error_code') or 'error'}: {detail['error']})"
    return f"{summary}  {json.dumps(detail, separators=(',', ':'))}"


def display_loop(stop: threading.Event, queue_url: str, out: TextIO = sys.stdout) -> None:
    """Print each event the rule delivers, until `stop` is set."""
    import boto3

    sqs = boto3.client("sqs")
    while not stop.is_set():
        try:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
        except Exception as error:
            if stop.is_set():
                return
            print(f"events: receive failed: {error}", file=sys.stderr)
            stop.wait(1)
            continue
        for message in messages:
            try:
                print(event_line(json.loads(message["Body"])), file=out, flush=True)
            except ValueError:
                print(f"event (not JSON): {message['Body'][:200]}", file=out, flush=True)
        if messages:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
