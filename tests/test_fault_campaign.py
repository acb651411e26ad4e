"""The fault campaign's tests: hundreds of jobs over hours of simulated minutes through the real
split tick and worker against moto, faults drawn at random from one seed; afterwards every
occurrence ran at most once, none was lost, no run stayed `running` (reliability.md). The
simulator is tests/campaign_support.py, which says what it models and which faults it draws.

A failure prints its seed. Replay it with
    MINION_CAMPAIGN_SEED=<seed> .venv/bin/python -m pytest tests/test_fault_campaign.py -k <plan>
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from campaign_support import DEFAULT, LONG, Campaign, Plan, Rates, campaign_seed, run_campaign
from chalicelib.store import Store
from chalicelib.worker import Worker


def test_a_fault_campaign_with_a_fresh_seed_keeps_every_promise(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two hundred jobs and a seed of random faults (fresh each run unless replayed)
    # When two simulated hours of ticks and workers run through those faults
    # Then no occurrence ran twice, none was lost, none stayed running
    run_campaign(aws, monkeypatch, campaign_seed(), DEFAULT)


SHORT = Plan(
    "fixed",
    jobs=100,
    minutes=45,
    outage=(20, 6),
    rates=replace(
        Rates(),
        tick_outage=0.03,
        worker_killed=0.1,
        tick_dynamodb=0.02,
        second_worker=0.06,
        entries_stuck=0.1,
        tick_overlap=0.03,
        part_killed=0.02,
        dead_lettered=0.02,
        part_lost=0.08,
        part_late=0.08,
        part_twice=0.08,
        response_lost=0.02,
        sweep_twice=0.15,
    ),
)
# Kinds of fault a fixed seed must have injected (prefixes of the campaign's counts), so that
# it keeps testing what it did.
FAULT_KINDS = (
    "ticks dropped",
    "ticks late",
    "ticks twice",
    "tick outages",
    "ticks overlapping",
    "tick failed",
    "throttled tick",
    "throttled worker",
    "responses lost",
    "batch entries failed",
    "messages twice",
    "messages failed",
    "workers killed",
    "second workers",
    "jobs disabled",
    "jobs deleted",
    "jobs changed mid-tick",
    "runs failed",
    "runs missed",
    "parts lost",
    "parts late",
    "parts twice",
    "parts killed",
)
# ...and of what the sweep repairs, and of faults of the sweep itself.
SWEEP_FAULT_KINDS = (
    "messages dead-lettered",
    "workers killed doomed",
    "runs lost (sweep)",
    "runs re-queued (sweep)",
    "sweeps killed",
    "sweeps twice",
)


@pytest.mark.parametrize("seed", [20260202, 7])
def test_a_fault_campaign_with_a_fixed_seed_keeps_every_promise(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Given a hundred jobs and a fixed seed that injects every kind of fault
    # When an hour of ticks and workers runs through them
    campaign = run_campaign(aws, monkeypatch, seed, SHORT)
    # Then every promise was kept (run_campaign), and the seed still injects what it did
    missing = [
        kind
        for kind in FAULT_KINDS + SWEEP_FAULT_KINDS
        if not any(n for name, n in campaign.stats.items() if name.startswith(kind))
    ]
    assert not missing, f"fault campaign seed: {seed}: injected no {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("search", range(1))  # one: the whole suite stays under ten minutes
def test_long_fault_campaigns_with_fresh_seeds_keep_every_promise(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, search: int
) -> None:
    # Given more jobs, more minutes and a fresh seed each (or the one to replay)
    # When the campaign runs / Then no promise is broken
    run_campaign(aws, monkeypatch, campaign_seed(), LONG)


# --- the campaign can fail -----------------------------------------------------------------------

TINY = Plan(
    "mutant",
    jobs=30,
    minutes=30,
    tail=10,
    rates=replace(Rates(), tick_dropped=0.15, tick_late=0.2, tick_outage=0.08, message_twice=0.3),
)


def _ignore_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that runs a run whatever its claim says (a duplicate runs again)."""
    real = Store.claim_run

    def claim_run(
        self: Store,
        run: Any,
        attempt: int,
        lease_seconds: int,
        now: datetime,
        must_exist: bool = False,
        **watch: Any,
    ) -> Any:
        claimed = real(self, run, attempt, lease_seconds, now, must_exist, **watch)
        return claimed or self.get_run(run.job_id, run.run_id)

    monkeypatch.setattr(Store, "claim_run", claim_run)


def _forget_missed_occurrences(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick that collapses past-due occurrences without recording them missed."""
    import chalicelib.tick as tick_module

    real = tick_module.decide
    monkeypatch.setattr(
        tick_module,
        "decide",
        lambda job, schedule, minute: replace(real(job, schedule, minute), missed=()),
    )


def _run_late_occurrences(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick that runs the latest occurrence however late it is (no starting deadline)."""
    import chalicelib.tick as tick_module

    real = tick_module.decide
    monkeypatch.setattr(
        tick_module,
        "decide",
        lambda job, schedule, minute: real(
            replace(job, starting_deadline_seconds=10**6), schedule, minute
        ),
    )


def _advance_whatever_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick that moves a shard's watermark past its slots even when a part failed part-way
    (runs not sent, successors not put)."""
    import chalicelib.tick as tick_module

    real = tick_module.Ticker._release

    def release(self: Any, state: Any, holder: str) -> bool:
        state.complete = True
        return real(self, state, holder)

    monkeypatch.setattr(tick_module.Ticker, "_release", release)


def _leave_skips_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that forgets to record a run it skips (the run stays `running`)."""
    monkeypatch.setattr(Worker, "_finish", lambda self, run, status, **kw: status)


MUTANTS = {
    "duplicates run again": (_ignore_the_lock, "the runner acted"),
    "missed occurrences are not recorded": (_forget_missed_occurrences, "lost (no run record"),
    "late occurrences run": (_run_late_occurrences, "recorded succeeded, expected ['missed']"),
    "runs left running": (_leave_skips_running, "still running at the end"),
    "watermark advanced past a failure": (_advance_whatever_happened, "lost (no run record"),
}


@pytest.mark.parametrize("mutant", MUTANTS.values(), ids=MUTANTS.keys())
def test_the_campaign_reports_a_planted_bug(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    mutant: tuple[Callable[[pytest.MonkeyPatch], None], str],
) -> None:
    # Given a tick or worker with a bug planted in it
    plant, symptom = mutant
    plant(monkeypatch)
    # When a small campaign runs over it
    campaign = Campaign(aws, 20260202, TINY, monkeypatch).run()
    # Then the campaign reports the broken promise
    violations = campaign.check()
    assert any(symptom in v for v in violations), violations[:10]
