"""The Lambda runtime the package is built for, whatever Python runs the build (infra/package.sh).

Chalice derives the runtime from the Python running it (python3.11 here, python3.12 on the
next machine) and downloads the dependencies' wheels for that. minion fixes it instead in
.chalice/config.json ("lambda_python_version", "lambda_architecture"), and this helper makes
Chalice obey it:

    runtime.py describe                 the runtime, architecture and the interpreter of that
                                        version on this machine, as JSON; exits 1 (saying
                                        how to get one) when there is no such interpreter
    runtime.py chalice ARGS...          `chalice ARGS...`, packaging for the configured runtime
                                        (its Runtime, and its ABI's manylinux wheels)
    runtime.py bytecode ZIP             adds the runtime's .pyc of every module to ZIP

The .pyc files are compiled by an interpreter of the runtime's own version (bytecode differs
between versions), as "unchecked-hash" pycs: Lambda unpacks the zip with its own file times and
its code directory is read-only, so a timestamp-checked .pyc would be ignored and every module
compiled again at every cold start.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

CONFIG = Path(".chalice") / "config.json"
RUNTIME_PATTERN = re.compile(r"python(3)\.(\d+)")


def configured(config_path: Path = CONFIG) -> dict[str, str]:
    """The runtime and architecture .chalice/config.json asks for (top level)."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    runtime = config.get("lambda_python_version")
    architecture = config.get("lambda_architecture", "x86_64")
    if not isinstance(runtime, str) or not RUNTIME_PATTERN.fullmatch(runtime):
        raise SystemExit(
            f"{config_path}: lambda_python_version must name a Lambda Python "
            f"runtime such as python3.13, not {runtime!r}"
        )
    if architecture not in ("x86_64", "arm64"):
        raise SystemExit(
            f"{config_path}: lambda_architecture must be x86_64 or arm64, not {architecture!r}"
        )
    return {"runtime": runtime, "architecture": architecture}


def _reports_version(candidate: str, version: str) -> bool:
    try:
        answer = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return False
    return answer.returncode == 0 and answer.stdout.strip() == version


def interpreter(runtime: str) -> str | None:
    """A Python of the runtime's version on this machine: $MINION_RUNTIME_PYTHON, pythonX.Y
    on the PATH, or one installed by pyenv (whose shims fail for versions not enabled)."""
    version = runtime.removeprefix("python")
    candidates = [os.environ.get("MINION_RUNTIME_PYTHON", ""), shutil.which(runtime) or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", runtime)),
        reverse=True,
    )
    return next((c for c in candidates if c and _reports_version(c, version)), None)


def describe() -> dict[str, Any]:
    """What `make package` builds for, and with which interpreter it compiles the bytecode."""
    return {**configured(), "interpreter": interpreter(configured()["runtime"])}


def run_chalice(arguments: list[str]) -> int:
    """Chalice's command line, with the configured runtime instead of the running Python's."""
    from chalice.cli import main
    from chalice.config import Config
    from chalice.deploy.packager import BaseLambdaDeploymentPackager

    runtime = configured()["runtime"]
    if runtime not in BaseLambdaDeploymentPackager._RUNTIME_TO_ABI:
        raise SystemExit(f"this Chalice cannot package for {runtime}")
    # Chalice reads its runtime from this property only (templates, wheel ABI, cache key).
    Config.lambda_python_version = property(lambda self: runtime)  # type: ignore[assignment,method-assign]
    # Chalice warns that the running Python differs from the runtime: here that is the point.
    warnings.filterwarnings("ignore", message="You are currently running")
    sys.argv = ["chalice", *arguments]
    return int(main() or 0)


def required_interpreter() -> str:
    """The runtime's interpreter, or an exit saying how to get one."""
    runtime = configured()["runtime"]
    python = interpreter(runtime)
    if python is None:
        raise SystemExit(
            f"package: no {runtime} on this machine to compile the package's bytecode with "
            f"(install it, e.g. `pyenv install {runtime.removeprefix('python')}`, or set "
            f"MINION_RUNTIME_PYTHON to its path)"
        )
    return python


def add_bytecode(zip_path: Path) -> int:
    """Rewrites ZIP with the runtime's unchecked-hash .pyc beside every module; returns how
    many it added."""
    runtime = configured()["runtime"]
    python = required_interpreter()
    with tempfile.TemporaryDirectory(prefix="minion-pyc-") as work:
        tree = Path(work) / "task"
        with zipfile.ZipFile(zip_path) as archive:
            # Bytecode of whatever Python ran Chalice is of no use to the runtime.
            members = [m for m in archive.infolist() if not m.filename.endswith(".pyc")]
            archive.extractall(tree, members)
        # -s/-p: tracebacks name /var/task, where Lambda unpacks the code.
        subprocess.run(
            [
                python,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                "-s",
                str(tree),
                "-p",
                "/var/task",
                str(tree),
            ],
            check=True,
        )
        tag = f"cpython-{runtime.removeprefix('python').replace('.', '')}"
        compiled = sorted(tree.rglob(f"*.{tag}.pyc"))
        rebuilt = zip_path.with_suffix(".tmp")
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as out:
            for member in members:
                out.writestr(
                    member, (tree / member.filename).read_bytes() if not member.is_dir() else b""
                )
            for pyc in compiled:
                name = pyc.relative_to(tree).as_posix()
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(info, pyc.read_bytes())
        rebuilt.replace(zip_path)
    return len(compiled)


def main(argv: list[str]) -> int:
    """The command line (see the module's docstring)."""
    if argv[:1] == ["describe"]:
        required_interpreter()
        print(json.dumps(describe()))
        return 0
    if argv[:1] == ["chalice"]:
        return run_chalice(argv[1:])
    if argv[:1] == ["bytecode"] and len(argv) == 2:
        print(f"added {add_bytecode(Path(argv[1]))} .pyc files for {configured()['runtime']}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
