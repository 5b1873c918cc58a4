"""ari_shape's check (from ../shared/tools/ari_shape.py beside the repo), against the copied api-docs models."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "fixtures" / "ari" / "api-docs"
PRIMITIVE: dict[str, Any] = {
    "string": str, "date": str, "int": int, "long": int, "double": (int, float),
    "boolean": bool, "object": dict, "Variable": dict, "Value": object,
}


@cache
def models() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(DOCS.glob("*.json")):
        found.update(json.loads(path.read_text()).get("models", {}))
    return found


def properties(name: str) -> dict[str, Any]:
    """The model's properties, inherited ones included (events extend Event extends Message)."""
    props: dict[str, Any] = {}
    for parent_name, parent in models().items():
        if name in parent.get("subTypes", []):
            props.update(properties(parent_name))
    props.update(models().get(name, {}).get("properties", {}))
    return props


def check(name: str, obj: Any, where: str = "") -> list[str]:
    out: list[str] = []
    _check(name, obj, where or name, out)
    return out


def _check(name: str, obj: Any, where: str, out: list[str]) -> None:
    if name in PRIMITIVE:
        if not isinstance(obj, PRIMITIVE[name]) or (name in ("int", "long")
                                                     and isinstance(obj, bool)):
            out.append(f"{where}: expected {name}, got {type(obj).__name__}")
        return
    if name.startswith("List[") and name.endswith("]"):
        if not isinstance(obj, list):
            out.append(f"{where}: expected a list of {name[5:-1]}, got {type(obj).__name__}")
            return
        for i, item in enumerate(obj):
            _check(name[5:-1], item, f"{where}[{i}]", out)
        return
    if name not in models():
        return
    if not isinstance(obj, dict):
        out.append(f"{where}: expected {name} object, got {type(obj).__name__}")
        return
    props = properties(name)
    for key, spec in props.items():
        if spec.get("required") and key not in obj:
            out.append(f"{where}: {name} lacks required '{key}'")
    for key, value in obj.items():
        if key not in props:
            out.append(f"{where}: {name} has '{key}', which the model does not define")
        else:
            _check(props[key]["type"], value, f"{where}.{key}", out)


def check_event(event: dict[str, Any]) -> list[str]:
    name = event.get("type")
    if not isinstance(name, str) or name not in models():
        return [f"unknown event type {name!r}"]
    return check(name, event)
