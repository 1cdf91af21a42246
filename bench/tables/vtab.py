"""The VTAB-1k layout the tables follow: task order and groups (from `bench.tasks`)."""

from __future__ import annotations

from bench.tasks import GROUPS, VTAB_TASKS

GROUP_NAMES = {"natural": "Natural", "specialized": "Specialized", "structured": "Structured"}


def task_order(tasks) -> list[str]:
    """VTAB order (Natural, Specialized, Structured), then any other task (e.g. digits)."""
    vtab = [t.name for t in VTAB_TASKS if t.name in set(tasks)]
    return vtab + sorted(set(tasks) - set(vtab))


def group_members() -> dict[str, list[str]]:
    """Each VTAB group's display name and its tasks, in order."""
    return {GROUP_NAMES[g]: [t.name for t in VTAB_TASKS if t.group == g] for g in GROUPS}
