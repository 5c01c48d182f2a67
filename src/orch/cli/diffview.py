"""A deployment's drift (``orch.plan.diff.Diff``) as people and programs read it."""

from __future__ import annotations

import json
from typing import Any

ACTION_WORDS = {
    "replace": "replace",
    "rerun": "run again",
    "create": "create",
    "delete": "delete",
    "store": "store",
    "input": "store",
    "take": "take over",
}


def diff_text(name: str, diff: Any) -> str:
    """Lines for a terminal: one per change, with what ``--update`` does about it."""
    if not diff.changes:
        return f"deployment '{name}' is up to date with this blueprint and its inputs\n"
    lines = [f"deployment '{name}' differs from this blueprint and its inputs:"]
    width = max(len(c.subject) for c in diff.changes)
    for change in diff.changes:
        action = ACTION_WORDS.get(change.action, change.action)
        lines.append(f"  {change.subject:<{width}}  {change.detail}  [{action}]")
    if diff.unknown:
        lines.append(
            "  (secret inputs are never stored, so they were not compared: "
            + ", ".join(sorted(diff.unknown)) + ")"
        )
    if diff.drifted:
        lines.append(_plan_line(diff))
    else:
        lines.append("nothing deployed changes: deploying takes these over")
    return "\n".join(lines) + "\n"


def _plan_line(diff: Any) -> str:
    parts = []
    if diff.replaced:
        parts.append(f"replace {', '.join(sorted(diff.replaced))}")
    if diff.removed:
        parts.append(f"delete {', '.join(sorted(diff.removed))}")
    if diff.added:
        parts.append(f"create {', '.join(sorted(diff.added))}")
    if diff.rerun:
        parts.append(f"run operations of {', '.join(sorted(diff.rerun))} again")
    what = "; ".join(parts) or "store the new inputs and operations"
    return f"--update would: {what}"


def diff_json(name: str, diff: Any) -> str:
    return json.dumps({"version": 1, "kind": "diff", "deployment": name, **diff.to_dict()})
