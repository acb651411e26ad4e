"""Cold start: a fresh interpreter importing the application against one importing boto3.

All three functions' handler module is `app`, so `import app` is what each cold start pays
before its first event. Time is the child's CPU time (user + system, from the kernel's
accounting of the waited child): on a shared machine a child's wall time also counts the
time it waited for a core, which is not the import's cost. Wall times are kept for the table.

Two conditions, each interpreter with a private bytecode cache directory:
- `compiled`: every module's bytecode compiled beforehand (by a warm-up run), as in a package
  that ships its `.pyc` files. The figure: the import work alone.
- `source`: nothing compiled, every module compiled at every start, as in the package
  `infra/package.sh` builds today (no `__pycache__`, and Lambda's code directory is
  read-only, so nothing is cached between cold starts either).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .backend import ROOT
from .seed import median

COMMANDS = {"app": "import app", "boto3": "import boto3"}
CONDITIONS = ("compiled", "source")


@dataclass
class ImportTimes:
    """CPU and wall seconds of fresh interpreters, by condition and by what they imported."""

    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    wall: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    added_by: list[tuple[str, float]] = field(default_factory=list)

    def cpu_of(self, condition: str, name: str) -> float:
        return median(self.cpu[condition, name])

    def ratio_of(self, condition: str) -> float:
        return self.cpu_of(condition, "app") / self.cpu_of(condition, "boto3")

    @property
    def ratio(self) -> float:
        return self.ratio_of("compiled")

    @property
    def wall_ratio(self) -> float:
        return median(self.wall["compiled", "app"]) / median(self.wall["compiled", "boto3"])


def _environment(condition: str, cache: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["PYTHONPYCACHEPREFIX"] = cache
    if condition == "source":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(code: str, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = os.times().elapsed
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    wall = os.times().elapsed - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def added_over_boto3(env: dict[str, str]) -> list[tuple[str, float]]:
    """Import seconds of each top-level package `import app` adds once boto3 is imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import boto3; import app"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("| boto3"))
    added: dict[str, float] = {}
    for line in lines[start + 1 :]:
        parts = line.split("|")
        if len(parts) == 3 and parts[0].split(":")[-1].strip().isdigit():
            package = parts[2].strip().split(".")[0]
            added[package] = added.get(package, 0.0) + int(parts[0].split(":")[-1]) / 1e6
    # The five largest; sorted() is stable, so ties keep their first-seen order (as most_common).
    return sorted(added.items(), key=lambda item: item[1], reverse=True)[:5]


def cold_imports(pairs: int) -> ImportTimes:
    """`pairs` interleaved rounds of fresh interpreters of each kind and condition."""
    times = ImportTimes()
    with (
        tempfile.TemporaryDirectory(prefix="bench-pyc-") as compiled,
        tempfile.TemporaryDirectory(prefix="bench-nopyc-") as empty,
    ):
        envs = {
            "compiled": _environment("compiled", compiled),
            "source": _environment("source", empty),
        }
        for code in COMMANDS.values():  # compiles the bytecode of `compiled`; warms the page cache
            _run(code, envs["compiled"])
        kinds = [(condition, name) for condition in CONDITIONS for name in COMMANDS]
        for pair in range(pairs):
            for condition, name in kinds if pair % 2 == 0 else kinds[::-1]:
                cpu, wall = _run(COMMANDS[name], envs[condition])
                times.cpu.setdefault((condition, name), []).append(cpu)
                times.wall.setdefault((condition, name), []).append(wall)
        times.added_by = added_over_boto3(envs["compiled"])
    return times
