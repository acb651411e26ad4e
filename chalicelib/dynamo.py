"""DynamoDB's attribute-value format, for the few types minion stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def to_attr(value: Any) -> dict[str, Any]:
    """A Python value (str, int, bool, None, dict, list) as a DynamoDB attribute value."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {k: to_attr(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_attr(attr: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    raise TypeError(f"unexpected attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping as a DynamoDB item, leaving out None values."""
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as a plain dict."""
    return {k: from_attr(v) for k, v in item.items()}
