"""The chat reporter: a run event (chalicelib/events.py) as a Slack-compatible webhook message.

minion's event reporters posted to a webhook endpoint with a channel, a username and an icon;
here the reporter is its own function, fed by an EventBridge rule on the run events, so a slow
or broken webhook never delays a run. Its settings live in a Secrets Manager secret (the
endpoint URL is a credential: it is never logged):

    {"endpoint": "https://hooks.slack.com/services/...", "channel": "#ops",
     "username": "minion", "icon": ":robot_face:"}

(or the endpoint URL alone, as the secret's whole text).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .observability import emit_now, logger

TIMEOUT_SECONDS = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")

VERBS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "missed": "was missed",
    "skipped": "was skipped",
    "retrying": "failed and will be retried",
}
MARKS = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "missed": ":warning:",
    "skipped": ":fast_forward:",
    "retrying": ":repeat:",
}


class ReporterConfigError(ValueError):
    """The webhook secret is misshapen; the message says how (never what the URL is)."""


class WebhookFailed(RuntimeError):
    """The webhook did not take the message: raised so that Lambda retries the event."""


@dataclass(frozen=True)
class WebhookConfig:
    """Where and as whom to post."""

    endpoint: str
    channel: str | None = None
    username: str | None = None
    icon: str | None = None

    @classmethod
    def parse(cls, text: str) -> WebhookConfig:
        """The secret's text: a JSON object as in the module's docstring, or the URL alone."""
        text = text.strip()
        fields: Mapping[str, Any]
        if text.startswith("{"):
            try:
                fields = json.loads(text)
            except ValueError:
                raise ReporterConfigError("webhook secret: not valid JSON") from None
        else:
            fields = {"endpoint": text}
        endpoint = fields.get("endpoint") or fields.get("url")
        if not isinstance(endpoint, str) or not endpoint:
            raise ReporterConfigError("webhook secret: endpoint: required")
        parts = urlsplit(endpoint)
        # https only, but for a server on this machine (the local stack, the tests).
        if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
            raise ReporterConfigError("webhook secret: endpoint: expected an https:// URL")
        for name in ("channel", "username", "icon"):
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise ReporterConfigError(f"webhook secret: {name}: expected a string")
        return cls(
            endpoint=endpoint,
            channel=fields.get("channel") or None,
            username=fields.get("username") or None,
            icon=fields.get("icon") or None,
        )


def message_text(detail: Mapping[str, Any]) -> str:
    """One readable line for a run event's detail."""
    status = str(detail.get("status", ""))
    name = detail.get("job_name") or detail.get("job_id")
    where = f"{detail.get('account')}/{detail.get('group')}"
    text = (
        f"{MARKS.get(status, ':grey_question:')} minion: job *{name}* ({where}) "
        f"{VERBS.get(status, status)}: run {detail.get('run_id')} scheduled for "
        f"{detail.get('scheduled_for')}, attempt {detail.get('attempts')}"
    )
    if detail.get("error"):
        code = f"{detail['error_code']}: " if detail.get("error_code") else ""
        text += f"\n> {code}{detail['error']}"
    if detail.get("run_url"):
        text += f"\n{detail['run_url']}"
    return text


def webhook_body(detail: Mapping[str, Any], config: WebhookConfig) -> dict[str, Any]:
    """The Slack-compatible body: `text`, and the channel, username and icon when configured."""
    body: dict[str, Any] = {"text": message_text(detail)}
    if config.channel:
        body["channel"] = config.channel
    if config.username:
        body["username"] = config.username
    if config.icon:
        body["icon_url" if config.icon.startswith(("http://", "https://")) else "icon_emoji"] = (
            config.icon
        )
    return body


def post(config: WebhookConfig, body: Mapping[str, Any], timeout: float = TIMEOUT_SECONDS) -> None:
    """POST the body as JSON; WebhookFailed (naming the status, never the URL) otherwise."""
    request = urllib.request.Request(
        config.endpoint,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "minion-reporter"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
    except urllib.error.HTTPError as error:
        raise WebhookFailed(f"webhook answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WebhookFailed(f"webhook unreachable ({type(reason).__name__})") from None


@dataclass
class Reporter:
    """Posts run events to the configured webhook."""

    config: Callable[[], WebhookConfig]
    timeout: float = TIMEOUT_SECONDS

    def report(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Post one EventBridge event; the body posted (None for an event that is not a run's)."""
        detail = event.get("detail")
        if not isinstance(detail, Mapping) or "run_id" not in detail:
            logger.warning(
                "not a run event; ignored",
                extra={"detail_type": event.get("detail-type"), "source": event.get("source")},
            )
            return None
        config = self.config()
        body = webhook_body(detail, config)
        try:
            post(config, body, self.timeout)
        except WebhookFailed as error:
            logger.error(
                "run event not reported",
                extra={
                    "reason": str(error),
                    "run_id": detail.get("run_id"),
                    "job_id": detail.get("job_id"),
                    "status": detail.get("status"),
                },
            )
            try:
                emit_now("WebhookFailures", 1)
            except Exception:
                logger.exception("metric not emitted", extra={"metric": "WebhookFailures"})
            raise
        logger.info(
            "run event reported",
            extra={"run_id": detail.get("run_id"), "status": detail.get("status")},
        )
        return body


def _secret_config() -> WebhookConfig:
    """The webhook settings from the secret MINION_WEBHOOK_SECRET_ID (cached 5 minutes)."""
    from aws_lambda_powertools.utilities import parameters

    from .settings import get_settings

    secret_id = get_settings().webhook_secret_id
    if not secret_id:
        raise ReporterConfigError("MINION_WEBHOOK_SECRET_ID: required by the reporter")
    value = parameters.get_secret(secret_id, max_age=300)
    if not isinstance(value, str):
        raise ReporterConfigError("webhook secret: expected a text secret")
    return WebhookConfig.parse(value)


def handle_event(
    event: dict[str, Any], context: Any = None, reporter: Reporter | None = None
) -> dict[str, Any]:
    """The reporter Lambda's entry point: raises when the webhook failed (Lambda retries)."""
    reporter = reporter or Reporter(_secret_config)
    body = reporter.report(event)
    return {"reported": body is not None}
