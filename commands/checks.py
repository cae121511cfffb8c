"""The whole check of a project's configuration: the processors' (flow, options), the forwarder's
(destinations), the identity role's (identity), the query library's (cohorts, goals) and the alert rules.
The admin API, the dashboard and the CLI refuse a change with any of its problems."""

from __future__ import annotations

from analytics.cohorts import check_cohorts
from analytics.goals import check_goals
from forwarder.registry import check_project as check_destinations
from headwater.alerts import check_alerts
from headwater.projects.model import Project
from headwater.settings import Settings, get_settings
from identity.graph import check_identity
from processors.checks import check_configuration as check_processing
from processors.checks import check_project as check_processing_project


def check_project(project: Project) -> list[str]:
    return (check_processing_project(project) + check_destinations(project, get_settings())
            + check_identity(project.identity) + check_cohorts(project.cohorts) + check_goals(project.goals)
            + check_alerts(project.alerts, project.cohorts))


def check_configuration(settings: Settings, projects: list[Project]) -> list[str]:
    return check_processing(settings, projects) + [p for project in projects
                                                   for p in check_destinations(project, settings)
                                                   + check_identity(project.identity)
                                                   + check_cohorts(project.cohorts) + check_goals(project.goals)
                                                   + check_alerts(project.alerts, project.cohorts)]
