"""`python -m bench [--quick] [--only NAME,...]`: the table, then one `name: value` per figure."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .units import WriteCount

GOALS = {
    "tick_items_read_per_due_job": 1.05,
    "tick_vs_floor_ratio": 1.5,
    "api_get_vs_getitem_ratio": 1.5,
    "cold_import_ratio": 1.6,
    "worker_vs_floor_ratio": 1.5,
    "write_units_per_run": 4.0,
}
# Figures whose goal is a floor (higher is better).
FLOORS = {"worker_batch_speedup": 5.0}


@dataclass(frozen=True)
class Scale:
    """How much each measurement does."""

    jobs: int
    due: int
    tick_due: int
    tick_rounds: int
    api_pairs: int
    import_pairs: int
    worker_batches: int
    worker_rounds: int
    unit_runs: int
    worker_speedup_rounds: int = 5


FULL = Scale(
    jobs=20_000,
    due=200,
    tick_due=1_000,
    tick_rounds=7,
    api_pairs=300,
    import_pairs=11,
    worker_batches=2,
    worker_rounds=25,
    unit_runs=200,
)
QUICK = Scale(
    jobs=400,
    due=4,
    tick_due=20,
    tick_rounds=1,
    api_pairs=5,
    import_pairs=1,
    worker_batches=1,
    worker_rounds=1,
    unit_runs=20,
    worker_speedup_rounds=1,
)
MEASUREMENTS = ("items", "tick", "api", "imports", "worker", "units")


def machine() -> str:
    """Cores, CPU model, Python, and how loaded the machine was."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} × {model}, Python {platform.python_version()}, "
        f"load average {load:.1f} at start"
    )


class Report:
    """Rows of the table as they come, the figures at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.figures: list[tuple[str, float]] = []

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def figure(self, name: str, value: float, detail: str) -> None:
        goal = GOALS.get(name)
        verdict = "" if goal is None else ("ok" if value <= goal else "MISSED")
        goal_text = "" if goal is None else f"≤ {goal}"
        if name in FLOORS:
            goal_text = f"≥ {FLOORS[name]}"
            verdict = "ok" if value >= FLOORS[name] else "MISSED"
        self.line(f"{name:<36} {value:>9.3f}  {goal_text:<7} {verdict:<6}  {detail}")
        self.figures.append((name, value))

    def finish(self) -> None:
        self.line()
        for name, value in self.figures:
            self.line(f"{name}: {value:.3f}")


def _calls(calls: dict[str, int], per: int, unit: str) -> str:
    return (
        ", ".join(f"{name} {count / per:.2f}" for name, count in sorted(calls.items()))
        + f" per {unit}"
    )


def run_items(report: Report, scale: Scale) -> None:
    from .tick import items_read

    result = items_read(scale.jobs, scale.due)
    report.figure(
        "tick_items_read_per_due_job",
        result.per_due_job,
        f"{result.tick_items} items read to find {result.due} due of {result.jobs} "
        f"jobs ({result.tick_calls.get('Query', 0)} Queries: a shard's queued items, its "
        f"minute's slot and the legacy index, for each shard; the due item carries the "
        f"schedule, so no job is read)",
    )
    report.figure(
        "full_scan_items_read_per_due_job",
        result.scan_per_due_job,
        f"{result.scan_items} items read by a full scan ({result.scan_calls} Scan "
        f"pages): what looking at every job costs",
    )


def run_tick(report: Report, scale: Scale) -> None:
    from .backend import SHARDS
    from .seed import median
    from .tick import tick_vs_floor

    result = tick_vs_floor(scale.tick_due, scale.tick_rounds)
    calls = sum(result.calls.values())
    floor_calls = -(-result.due // 10) + 2 * -(-result.due // 25) + 4 * SHARDS
    report.figure(
        "tick_vs_floor_ratio",
        result.ratio,
        f"{result.due} due: tick {median(result.tick):.2f} s, floor "
        f"{median(result.floor):.2f} s (medians of {len(result.tick)} rounds); "
        + _calls(result.calls, result.due, "due job")
        + f"; client CPU per call: tick {median(result.tick_cpu) / calls * 1000:.2f} "
        f"ms, floor {median(result.floor_cpu) / floor_calls * 1000:.2f} ms",
    )


def run_api(report: Report, scale: Scale) -> None:
    from .api import api_get_vs_get_item
    from .seed import median

    result = api_get_vs_get_item(scale.api_pairs)
    report.figure(
        "api_get_vs_getitem_ratio",
        result.ratio,
        f"GET through the handler {median(result.handler) * 1000:.2f} ms, bare "
        f"GetItem {median(result.get_item) * 1000:.2f} ms (medians of "
        f"{len(result.handler)} pairs); client CPU per request: handler "
        f"{median(result.handler_cpu) * 1000:.2f} ms, GetItem "
        f"{median(result.get_item_cpu) * 1000:.2f} ms",
    )


def run_imports(report: Report, scale: Scale) -> None:
    from .imports import cold_imports

    result = cold_imports(scale.import_pairs)
    added = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in result.added_by)
    pairs = len(result.cpu["compiled", "app"])
    report.figure(
        "cold_import_ratio",
        result.ratio,
        f"bytecode compiled: import app {result.cpu_of('compiled', 'app') * 1000:.0f} "
        f"ms CPU, import boto3 {result.cpu_of('compiled', 'boto3') * 1000:.0f} ms "
        f"(medians of {pairs}; wall-time ratio {result.wall_ratio:.2f}); "
        f"added over boto3: {added}",
    )
    report.figure(
        "cold_import_from_source_ratio",
        result.ratio_of("source"),
        f"nothing compiled (today's package): import app "
        f"{result.cpu_of('source', 'app') * 1000:.0f} ms CPU, import boto3 "
        f"{result.cpu_of('source', 'boto3') * 1000:.0f} ms",
    )


def run_worker(report: Report, scale: Scale) -> None:
    from .seed import median
    from .worker import batch_speedup, worker_vs_floor

    result = worker_vs_floor(scale.worker_batches, scale.worker_rounds)
    report.figure(
        "worker_vs_floor_ratio",
        result.ratio,
        f"worker {result.worker_rate:.1f} runs/s, floor {result.floor_rate:.1f} "
        f"runs/s ({result.runs} runs a round, {len(result.worker)} rounds); "
        + _calls(result.calls, result.runs, "run")
        + f"; client CPU per run: worker "
        f"{median(result.worker_cpu) / result.runs * 1000:.1f} ms, floor "
        f"{median(result.floor_cpu) / result.runs * 1000:.1f} ms",
    )
    speedup = batch_speedup(rounds=scale.worker_speedup_rounds)
    report.figure(
        "worker_batch_speedup",
        speedup.ratio,
        f"a batch of {speedup.runs} runs whose runner waits {speedup.wait * 1000:.0f} "
        f"ms: one by one {median(speedup.one_by_one):.2f} s, at once "
        f"{median(speedup.at_once):.2f} s, of which the emulator's calls "
        f"{median(speedup.emulator):.2f} s (it answers one at a time, AWS side by "
        f"side); medians of {len(speedup.at_once)} rounds",
    )


def _by_write(count: WriteCount) -> str:
    by_write = Counter[str]()
    for (function, _, kind), units in count.units.items():
        by_write[f"{function} {kind}"] += units
    return ", ".join(f"{name} {units / count.runs:.2f}" for name, units in sorted(by_write.items()))


def run_units(report: Report, scale: Scale) -> None:
    from .units import write_units_per_run

    minutes = write_units_per_run(scale.unit_runs)
    steady, first = minutes.steady, minutes.first
    report.figure(
        "write_units_per_run",
        steady.per_run,
        f"{steady.runs} scheduled dummy runs, tick to record, each a job's second (and every "
        f"later) run: {_by_write(steady)}. A job's first run after an API write: "
        f"{first.per_run:.3f} ({_by_write(first)})",
    )
    by_call = Counter[str]()
    for (function, call), count in steady.requests.items():
        by_call[f"{function} {call}"] += count
    report.figure(
        "aws_requests_per_run",
        steady.requests_per_run,
        ", ".join(f"{name} {count / steady.runs:.3f}" for name, count in sorted(by_call.items())),
    )


RUNNERS: dict[str, Callable[[Report, Scale], None]] = {
    "items": run_items,
    "tick": run_tick,
    "api": run_api,
    "imports": run_imports,
    "worker": run_worker,
    "units": run_units,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny scale: checks that every figure is produced, not its value",
    )
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated subset of {', '.join(MEASUREMENTS)}",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(unknown)}")
    scale = QUICK if args.quick else FULL

    # The service logs and emits metrics to stdout, as in Lambda; here they go to /dev/null
    # (their formatting is still paid) and the report keeps the real stdout to itself.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    report = Report(out)

    from .backend import moto_server, service_environment

    started = time.monotonic()
    report.line(
        f"minion bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{'quick' if args.quick else 'full'} scale"
    )
    report.line(f"machine: {machine()}")
    with moto_server() as endpoint:
        from moto import __version__ as moto_version

        report.line(f"backend: moto {moto_version} server on loopback, in its own process")
        report.line()
        report.line(f"{'figure':<36} {'value':>9}  {'goal':<7} {'':<6}  measured")
        os.environ.update(service_environment(endpoint))
        for name in only:
            RUNNERS[name](report, scale)
    report.line(f"({time.monotonic() - started:.0f} s)")
    report.finish()
    return 0


def _main() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    _main()
