"""databaseRunner: starts, stops or reboots an RDS DB instance; starts or stops Aurora clusters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .base import (
    PermanentError,
    RetryableError,
    RunContext,
    RunResult,
    Scope,
    aws_call,
    check_choice,
    check_keys,
    check_pattern,
    classify,
    revalidate,
    statement,
)

# RDS identifiers: a letter, then letters, digits and single hyphens, at most 63 characters.
IDENTIFIER = re.compile(r"(?=[A-Za-z0-9-]{1,63}\Z)[A-Za-z](?:-?[A-Za-z0-9])*")
ACTIONS = ("start", "stop", "reboot")
# Statuses that already are, or are on their way to, what the action asks for.
ALREADY = {
    "start": frozenset({"available", "starting"}),
    "stop": frozenset({"stopped", "stopping"}),
    "reboot": frozenset({"rebooting"}),
}
# Statuses that pass by themselves: a state conflict met in one of them is worth a retry.
BETWEEN_STATES = frozenset(
    {
        "starting",
        "stopping",
        "rebooting",
        "backing-up",
        "modifying",
        "creating",
        "maintenance",
        "upgrading",
        "renaming",
        "resetting-master-credentials",
        "storage-optimization",
        "configuring-enhanced-monitoring",
        "configuring-iam-database-auth",
        "configuring-log-exports",
        "converting-to-vpc",
        "moving-to-vpc",
        "migrating",
        "promoting",
        "backtracking",
    }
)


@dataclass(frozen=True)
class _Database:
    """What DescribeDBInstances or DescribeDBClusters said about the identifier."""

    kind: str  # "instance" or "cluster"
    identifier: str
    status: str
    cluster: str | None = None  # the Aurora cluster an instance belongs to
    members: tuple[str, ...] = ()  # a cluster's instances


class DatabaseRunner:
    """Acts on the DB instance, or else the Aurora cluster, that `instance_id` names."""

    name = "databaseRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = (
        "rds:StartDBInstance",
        "rds:StopDBInstance",
        "rds:RebootDBInstance",
        "rds:DescribeDBInstances",
        "rds:StartDBCluster",
        "rds:StopDBCluster",
        "rds:DescribeDBClusters",
    )

    def validate(self, details: Mapping[str, str]) -> None:
        """Require `instance_id` (an RDS identifier) and `database_action`."""
        check_keys(details, self.name, ("instance_id", "database_action"))
        check_pattern(
            details,
            "instance_id",
            IDENTIFIER,
            "must be an RDS identifier: a letter, then letters, digits or single "
            "hyphens, at most 63 characters, not ending with a hyphen",
        )
        check_choice(details, "database_action", ACTIONS)

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """The DB instance or the DB cluster of this identifier only."""
        identifier = details["instance_id"]
        return [
            statement(
                [
                    "rds:StartDBInstance",
                    "rds:StopDBInstance",
                    "rds:RebootDBInstance",
                    "rds:DescribeDBInstances",
                    "rds:StartDBCluster",
                    "rds:StopDBCluster",
                    "rds:DescribeDBClusters",
                ],
                [scope.arn("rds", f"db:{identifier}"), scope.arn("rds", f"cluster:{identifier}")],
            )
        ]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Find the instance or cluster, then act unless it is already where the action leads."""
        revalidate(self, details)
        identifier, action = details["instance_id"], details["database_action"]
        rds = ctx.client("rds")
        db = _describe(rds, identifier)
        if db.status in ALREADY[action]:
            return _result(db, action, db.status, changed=False)
        if db.kind == "instance" and db.cluster and action != "reboot":
            raise PermanentError(
                f"DB instance {identifier} belongs to Aurora cluster {db.cluster}: "
                f"{action} the cluster instead",
                "InvalidDBInstanceState",
            )
        if db.kind == "cluster" and action == "reboot":
            raise PermanentError(
                f"{identifier} is an Aurora cluster: reboot its instances "
                f"({', '.join(db.members) or 'none'}) one job each"
            )
        if action == "reboot" and db.status != "available":
            error = RetryableError if db.status in BETWEEN_STATES else PermanentError
            raise error(
                f"DB instance {identifier} is {db.status}: only an available instance reboots",
                "InvalidDBInstanceState",
            )
        try:
            new = _act(rds, db, action)
        except (ClientError, BotoCoreError) as error:
            between = db.status in BETWEEN_STATES
            raise classify(
                error, f"rds {action} {db.kind} {identifier}", between_states=between
            ) from error
        return _result(db, action, new, changed=True)


def _describe(rds: Any, identifier: str) -> _Database:
    """The DB instance called `identifier`, or else the DB cluster; PermanentError if neither."""
    try:
        with aws_call(f"rds DescribeDBInstances {identifier}"):
            instance = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        return _Database(
            "instance",
            identifier,
            instance["DBInstanceStatus"],
            cluster=instance.get("DBClusterIdentifier"),
        )
    except PermanentError as error:
        if error.code != "DBInstanceNotFound":
            raise
    try:
        with aws_call(f"rds DescribeDBClusters {identifier}"):
            cluster = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
    except PermanentError as error:
        if error.code == "DBClusterNotFoundFault":
            raise PermanentError(
                f"rds: no DB instance or DB cluster named {identifier}", "DBInstanceNotFound"
            ) from error
        raise
    members = tuple(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []))
    return _Database("cluster", identifier, cluster["Status"], members=members)


def _act(rds: Any, db: _Database, action: str) -> str:
    """Call RDS for `action`; the status it reports right after the call."""
    if db.kind == "cluster":
        call = rds.start_db_cluster if action == "start" else rds.stop_db_cluster
        return str(call(DBClusterIdentifier=db.identifier)["DBCluster"]["Status"])
    call = {
        "start": rds.start_db_instance,
        "stop": rds.stop_db_instance,
        "reboot": rds.reboot_db_instance,
    }[action]
    return str(call(DBInstanceIdentifier=db.identifier)["DBInstance"]["DBInstanceStatus"])


def _result(db: _Database, action: str, new: str, *, changed: bool) -> RunResult:
    what = f"DB {db.kind} {db.identifier}"
    if changed:
        output = f"{what}: {action}: {db.status} -> {new}"
    else:
        output = f"{what}: already {db.status}, {action} not needed"
    return RunResult(
        output=output,
        data={
            "identifier": db.identifier,
            "kind": db.kind,
            "action": action,
            "previous_state": db.status,
            "new_state": new,
            "changed": changed,
        },
    )
