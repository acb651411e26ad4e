"""`make bench` at a tiny scale: every figure is printed, last, as a `name: value` line.

The values of timed figures are not asserted (a test never times anything); the one count
figure, items read per due job, is: it does not depend on the machine.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "tick_items_read_per_due_job",
    "full_scan_items_read_per_due_job",
    "tick_vs_floor_ratio",
    "api_get_vs_getitem_ratio",
    "cold_import_ratio",
    "cold_import_from_source_ratio",
    "worker_vs_floor_ratio",
    "worker_batch_speedup",
    "write_units_per_run",
    "aws_requests_per_run",
)


@pytest.fixture(scope="module")
def quick_bench() -> subprocess.CompletedProcess[str]:
    """`python -m bench --quick`, run once for the module (it starts its own moto server)."""
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=600,
    )


@pytest.mark.slow
def test_quick_bench_ends_with_one_parsable_line_per_figure(
    quick_bench: subprocess.CompletedProcess[str],
) -> None:
    # Given the bench run at its tiny scale
    assert quick_bench.returncode == 0, quick_bench.stderr[-4000:]
    lines = quick_bench.stdout.splitlines()

    # Then its last lines are the figures, in order, each `name: value` with a finite number
    figures = [line.split(": ") for line in lines[-len(FIGURES) :]]
    assert [parts[0] for parts in figures] == list(FIGURES), lines[-len(FIGURES) :]
    assert all(len(parts) == 2 and math.isfinite(float(parts[1])) for parts in figures)


@pytest.mark.slow
def test_quick_bench_prints_its_table_before_the_figures(
    quick_bench: subprocess.CompletedProcess[str],
) -> None:
    # Given the bench run at its tiny scale
    lines = quick_bench.stdout.splitlines()

    # Then the human-readable table comes first: when and where it ran, then a row per figure
    assert lines[0].startswith("minion bench, ")
    assert any(line.startswith("machine: ") for line in lines[:3])
    table = lines[: -len(FIGURES)]
    for name in FIGURES:
        assert any(line.startswith(name + " ") for line in table), name


@pytest.mark.slow
def test_quick_bench_tick_reads_only_the_due_jobs(
    quick_bench: subprocess.CompletedProcess[str],
) -> None:
    # Given the bench run at its tiny scale (400 stored jobs, 4 of them due)
    values = dict(line.split(": ") for line in quick_bench.stdout.splitlines()[-len(FIGURES) :])

    # Then the tick read one item per due job (its due item, which carries the schedule: no
    # job is read; each shard's lock is written, not read, and its empty slot partition reads
    # nothing), where a full scan read every item of the table: 400 jobs and their 400 due
    # items for 4 due jobs
    assert float(values["tick_items_read_per_due_job"]) == 1.0
    assert float(values["full_scan_items_read_per_due_job"]) == 200.0
