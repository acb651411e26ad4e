"""Support for the tests of the deployment package: `make package` run at most once per
change of its inputs, and a small evaluator of the template's intrinsics."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
TEMPLATE = BUILD / "sam.json"
ZIP = BUILD / "deployment.zip"
RUNTIME_INFO = BUILD / "runtime.json"
DIGEST = BUILD / "inputs.sha256"
# What the package is made of (with everything under chalicelib/ and vendor/).
PACKAGE_INPUTS = [
    "app.py",
    "requirements.txt",
    ".chalice/config.json",
    "infra/minion.yaml",
    "infra/package.sh",
    "infra/runtime.py",
    "infra/runner-role.yaml",
]
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK = "minion-test"


def _git_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def inputs_digest() -> str:
    """A hash of every input of the package, and of the commit its build info names."""
    digest = hashlib.sha256(_git_head().encode())
    files = [ROOT / p for p in PACKAGE_INPUTS] + sorted(
        p
        for folder in ("chalicelib", "vendor")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "build_info.json"
    )
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextmanager
def package_lock() -> Iterator[None]:
    """Holds build/ for one test at a time (xdist workers share the work tree)."""
    lock_path = Path(tempfile.gettempdir()) / (
        "minion-package-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:16] + ".lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def packaged_template() -> dict[str, Any]:
    """build/sam.json, packaged by infra/package.sh unless build/ already holds the package of
    exactly these inputs."""
    with package_lock():
        wanted = inputs_digest()
        fresh = (
            all(p.exists() for p in (TEMPLATE, ZIP, RUNTIME_INFO, DIGEST))
            and DIGEST.read_text().strip() == wanted
        )
        if not fresh:
            env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
            result = subprocess.run(
                [str(ROOT / "infra" / "package.sh")],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if result.returncode != 0:
                pytest.fail(
                    f"infra/package.sh failed ({result.returncode}):\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )
            DIGEST.write_text(wanted + "\n")
        return json.loads(TEMPLATE.read_text())


# --- a small evaluator of the template's intrinsics, with default parameters ------------------


class Resolver:
    """Renders intrinsics as they would deploy with the default parameters: each resource's
    physical name is its logical name, in account 123456789012, us-east-1."""

    ARN_FORMATS = {
        "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{n}",
        "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
        "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:{n}:*",
        "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
        "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:{r}:{a}:secret:{n}",
        "AWS::CloudWatch::Alarm": "arn:aws:cloudwatch:{r}:{a}:alarm:{n}",
    }

    def __init__(
        self,
        template: dict[str, Any],
        overrides: dict[str, str] | None = None,
        account: str = ACCOUNT_ID,
    ) -> None:
        self.template = template
        self.account = account
        self.parameters = {
            name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()
        }
        self.parameters.update(overrides or {})

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": self.account,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return None  # the property is left out
        if name in self.parameters:
            kind = self.template["Parameters"][name]["Type"]
            value = self.parameters[name]
            return value.split(",") if kind == "CommaDelimitedList" else value
        resource = self.template["Resources"][name]
        if resource["Type"] in ("AWS::SecretsManager::Secret",):
            return self.arn(name)
        if resource["Type"] == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"
        if resource["Type"] == "AWS::Logs::LogGroup":
            return self.resolve(resource["Properties"].get("LogGroupName", name))
        return name

    def arn(self, name: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        physical = self.ref(name) if kind == "AWS::Logs::LogGroup" else name
        return self.ARN_FORMATS[kind].format(r=REGION, a=self.account, n=physical)

    def get_att(self, name: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(name)
        if attribute == "QueueName":
            return name
        raise AssertionError(f"no model of {name}.{attribute}")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(name, attribute)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            variables = {k: self.resolve(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                key = match.group(1)
                if key in variables:
                    return str(variables[key])
                if "." in key and not key.startswith("AWS::"):
                    return str(self.get_att(*key.split(".", 1)))
                return str(self.ref(key))

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if function == "Fn::If":
            chosen = argument[1] if self.condition(argument[0]) else argument[2]
            return self.resolve(chosen)
        if function == "Fn::Equals":
            left, right = self.resolve(argument)
            return left == right
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Fn::Join":
            return argument[0].join(self.resolve(argument[1]))
        if function == "Fn::Split":
            return self.resolve(argument[1]).split(argument[0])
        if function == "Fn::Select":
            return self.resolve(argument[1])[int(argument[0])]
        if function == "Condition":
            return self.condition(argument)
        return {function: self.resolve(argument)}
