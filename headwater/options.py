"""Checking a project's per-processor options object: the shared shape of every ``check_*``."""

from __future__ import annotations


def check_options(name: str, raw: object, known: set[str], flags: tuple[str, ...] = ()) -> list[str]:
    """Problems of ``raw``: not an object, unknown keys, and ``flags`` that are not booleans.
    Returns ``[f"{name} must be an object"]`` alone when it is not a dict, so callers can stop there."""
    if not isinstance(raw, dict):
        return [f"{name} must be an object"]
    problems = [f"{name} has unknown key {key!r}" for key in raw if key not in known]
    problems += [f"{name}.{flag} must be true or false" for flag in flags
                 if flag in raw and not isinstance(raw[flag], bool)]
    return problems
