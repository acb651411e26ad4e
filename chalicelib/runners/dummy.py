"""dummyRunner: renders the deployment's template with the account name; touches nothing."""

from __future__ import annotations

from collections.abc import Mapping

from .base import DetailsError, RunContext, RunResult, revalidate


class DummyRunner:
    name = "dummyRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = ()

    def validate(self, details: Mapping[str, str]) -> None:
        extra = sorted(k for k in details if k != "runner")
        if extra:
            raise DetailsError(extra[0], "dummyRunner takes no details besides runner")

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        revalidate(self, details)
        output = ctx.dummy_template.replace("{{.Account}}", ctx.account).replace(
            "{{ .Account }}", ctx.account
        )
        return RunResult(output=output)
