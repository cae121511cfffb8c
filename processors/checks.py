"""Checking the whole processing configuration at once: every project's flow and processor options,
and every processor's deployment settings. All problems are reported together.

Used at start by the mediator and every processor (which refuse to start on any problem), by the
admin API before it stores a change, and by ``headwater check``.
"""

from __future__ import annotations

from headwater.errors import FatalError
from headwater.flow import FlowError, validate_flow
from headwater.projects.model import Project
from headwater.settings import Settings
from processors.steps import STEPS


class ConfigError(FatalError):
    """The configuration has problems; the message lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def check_project(project: Project) -> list[str]:
    problems = []
    if project.flow is not None:
        try:
            validate_flow(project.flow)
        except FlowError as exc:
            problems.append(str(exc))
    problems += [problem for step in STEPS.values() for problem in step.check_project(project)]
    days = project.retention_days
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36_500):
        problems.append("retention_days must be a whole number of days from 1 to 36500, or null")
    return [f"project {project.id}: {p}" for p in problems]


def check_deployment(settings: Settings) -> list[str]:
    """The deployment-wide settings of every processor."""
    problems = [f"{name}: {p}" for name, step in STEPS.items() for p in step.check_settings(settings)]
    if not 0 < settings.max_invalid_ratio <= 1:
        problems.append("max_invalid_ratio must be in (0, 1]")
    if settings.invalid_window < 1:
        problems.append("invalid_window must be at least 1")
    return problems


def check_configuration(settings: Settings, projects: list[Project]) -> list[str]:
    return [p for project in projects for p in check_project(project)] + check_deployment(settings)


def require_valid(settings: Settings, projects: list[Project]) -> None:
    problems = check_configuration(settings, projects)
    if problems:
        raise ConfigError(problems)
