"""The page handlers. Each gets the request and a context with the viewer, the project, the parsed URL
state and the view's name (see ``guarded`` in :mod:`dashboard.app`), runs its queries and renders."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from analytics import activity, cohorts, discovery, queries
from analytics import people as people_queries
from analytics.catalogue import catalogue_document
from analytics.queries import Query, QueryError
from dashboard import views
from dashboard.access import from_this_site
from dashboard.api import view_queries
from dashboard.formatting import plain
from dashboard.rendering import ADMIN_ONLY, form_fields, problem, render
from dashboard.runner import QueryRunner
from dashboard.state import ViewState
from headwater.destinations import shown
from headwater.flow import DEFAULT_FLOW, FlowError
from headwater.group_lag import group_lags
from headwater.projects.admin import ProjectError
from headwater.replay import Replayer


async def _run(request: Request, context: dict, view: str, **extra) -> dict:
    queries = view_queries(view, context["project"].id, context["state"], **extra)
    return await request.app.state.runner.records(queries)


async def _run_beside_chart(request: Request, context: dict, view: str) -> dict:
    """A view's queries but its chart's, which the page's script asks the Stats API for (so the
    chart's query runs once, on the path programs use too)."""
    queries = view_queries(view, context["project"].id, context["state"])
    queries.pop(views.CHART_BLOCKS[view], None)
    return await request.app.state.runner.records(queries)


async def to_overview(request: Request, context: dict) -> Response:
    return RedirectResponse(f"/p/{context['project'].id}/overview{context['state'].query_string()}", 303)


async def overview_data(runner: QueryRunner, project_id: str, state: ViewState, chart: bool = True) -> dict:
    """Everything the overview shows, the chart's data with ``chart`` (the page's script asks the Stats
    API for it; ``make bench`` times this with it, and its rendering, on 10M events)."""
    queries = views.overview_queries(project_id, state)
    if not chart:
        queries.pop(views.CHART_BLOCKS["overview"])
    rows = await runner.records(queries)
    return {"headline": views.headline(rows["traffic"], rows["engagement"]),
            "trend": views.chart("overview", rows, state), "top_blocks": views.TOP_BLOCKS, "rows": rows,
            "no_events": not any(r["current"] for r in rows["traffic"])}


async def overview(request: Request, context: dict) -> Response:
    context.update(await overview_data(request.app.state.runner, context["project"].id, context["state"],
                                       chart=False))
    return render(request, "overview.html", context)


async def funnels(request: Request, context: dict) -> Response:
    rows = await _run(request, context, "funnels")
    steps = context["state"].steps
    issue = ""
    if len(steps) == 1:
        issue = "Add at least one more step."
    elif len(set(steps)) != len(steps):
        issue = "Each step must be different."
    funnel, breakdown = rows.get("funnel", []), context["state"].breakdown
    if breakdown:
        segments = [(c.name, views.funnel_steps([r for r in funnel if r["cohort"] == c.name])) for c in breakdown]
    elif context["state"].split:  # largest first
        values = [r["breakdown"] for r in sorted(funnel, key=lambda r: -r["visitors"]) if r["step"] == 1]
        segments = [(v, views.funnel_steps([r for r in funnel if r["breakdown"] == v])) for v in values]
    else:
        segments = [("", views.funnel_steps(funnel))]
    context.update(rows=rows, issue=issue, steps="funnel" in rows, segments=segments)
    return render(request, "funnels.html", context)


async def retention(request: Request, context: dict) -> Response:
    rows = await _run(request, context, "retention")
    state = context["state"]
    last_day = (state.bounds()[1] - timedelta(days=1)).date()
    if state.breakdown:
        segments = [(c.name, views.cohort_grid([r for r in rows["retention"] if r["segment"] == c.name],
                                               state.periods, state.period, last_day)) for c in state.breakdown]
    elif state.split:  # largest first
        sizes: dict[str, int] = {}
        for r in rows["retention"]:
            if r["periods_later"] == 0:
                sizes[r["segment"]] = sizes.get(r["segment"], 0) + r["cohort_size"]
        segments = [(v, views.cohort_grid([r for r in rows["retention"] if r["segment"] == v], state.periods,
                                          state.period, last_day)) for v in sorted(sizes, key=lambda v: -sizes[v])]
    else:
        segments = [("", views.cohort_grid(rows["retention"], state.periods, state.period, last_day))]
    context.update(segments=segments, grid=any(grid for _, grid in segments))
    return render(request, "retention.html", context)


async def trends(request: Request, context: dict) -> Response:
    """Lines of any events or pages, by a chosen metric, optionally broken down or beside the period
    before."""
    context.update(metrics=queries.METRICS, lines_sql=[], issue="")
    try:  # built, not run: the chart and its table are the Stats API's answer, which the script draws
        context["lines_sql"] = list(view_queries("trends", context["project"].id, context["state"]))
    except QueryError as exc:  # a choice the form allows but cannot chart: said beside the form
        context["issue"] = str(exc)
        return render(request, "trends.html", context, 400)
    return render(request, "trends.html", context)


async def revenue(request: Request, context: dict) -> Response:
    """Revenue over time per currency, by where the buyers came from, and by product."""
    rows = await _run_beside_chart(request, context, "revenue")
    context.update(rows=rows, blocks=views.REVENUE_BLOCKS)
    return render(request, "revenue.html", context)


async def discover(request: Request, context: dict) -> Response:
    """Candidate funnels (ending at the target, when one is set), the drivers of the target, and the
    paths from or to a step, with the steps seen in the range to pick from."""
    state, project_id = context["state"], context["project"].id
    runner = request.app.state.runner
    since, until = state.bounds()
    try:
        known, found = await asyncio.gather(
            runner.records({"steps": discovery.steps_seen(project_id, since, until, state.filters)}),
            discovery.discover(runner.records, project_id, since, until, state.filters, state.target or None,
                               state.path or None, state.direction, rank=state.rank))
    except QueryError as exc:
        return problem(request, 400, "Cannot discover that", str(exc))
    context.update(found=found, known=known["steps"], rankings=discovery.RANKINGS,
                   directions=discovery.DIRECTIONS)
    return render(request, "discover.html", context)


async def _live_rows(request: Request, context: dict) -> dict:
    minutes = request.app.state.settings.dashboard_live_minutes
    rows = await _run(request, context, "live", minutes=minutes)
    current: dict = next((r for r in rows["traffic"] if r["current"]), {})
    return {"minutes": minutes, "events": current.get("events", 0), "visitors": current.get("visitors", 0),
            "latest": rows["latest"]}


async def live(request: Request, context: dict) -> Response:
    context.update(live=await _live_rows(request, context))
    return render(request, "live.html", context)


async def live_json(request: Request, context: dict) -> Response:
    data = await _live_rows(request, context)
    data["latest"] = [{k: plain(v) for k, v in row.items()} for row in data["latest"]]
    data["at"] = datetime.now(UTC).isoformat()
    return JSONResponse(data)


async def sessions(request: Request, context: dict) -> Response:
    rows = await _run(request, context, "sessions")
    context.update(rows=rows, summary=(rows["summary"] or [{}])[0], new=(rows["new"] or [{}])[0])
    return render(request, "sessions.html", context)


LATEST_MS = 10_413_791_999_999  # 2299-12-31T23:59:59.999Z, the last time a DateTime64 holds


def _ms_param(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name, "")
    if not value.isascii() or not value.isdigit() or len(value) > 14 or int(value) > LATEST_MS:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


async def session(request: Request, context: dict) -> Response:
    start, end = _ms_param(request, "start"), _ms_param(request, "end")
    if start is None or end is None or end < start:
        return problem(request, 400, "Cannot show this session", "start and end must be times in milliseconds")
    query = activity.session_timeline(context["project"].id, request.path_params["session_id"],
                                      start, end + timedelta(milliseconds=1))
    rows = (await request.app.state.runner.records({"timeline": query}))["timeline"]
    context.update(session_id=request.path_params["session_id"], timeline=rows, start=start, end=end)
    return render(request, "session.html", context)


async def people(request: Request, context: dict) -> Response:
    search = request.query_params.get("q", "").strip()
    rows = await _run(request, context, "people", search=search)
    context.update(rows=rows, search=search, cohorts=await _cohort_sizes(request, context))
    return render(request, "people.html", context)


async def _cohort_sizes(request: Request, context: dict) -> list[dict]:
    """Each of the project's cohorts with its members now (persons, or ids with count=ids), and when
    and how fast that was computed."""
    project, count_ids = context["project"], context["state"].filters.count_ids
    sizes = []
    for raw in project.cohorts:
        try:
            cohort = cohorts.find(project.id, project.cohorts, raw.get("name", ""))
        except ValueError:
            continue
        sql, params = cohorts.size_sql(cohort, count_ids)
        started = time.perf_counter()
        found = await request.app.state.runner.records({"size": Query(sql, params, ("members",))})
        sizes.append({"name": cohort.name, "members": found["size"][0]["members"], "at": datetime.now(UTC),
                      "ms": round((time.perf_counter() - started) * 1000)})
    return sizes


async def person(request: Request, context: dict) -> Response:
    """One person: found by any of its ids; its ids, profile, traits, sessions and latest events."""
    project_id, given = context["project"].id, request.path_params["person_id"]
    runner = request.app.state.runner
    found = (await runner.records({"person": people_queries.person_of(project_id, given)}))["person"]
    person_id = (found[0]["person"] if found else "") or given
    merged = (await runner.records({"ids": people_queries.person_ids(project_id, person_id)}))["ids"]
    ids = list(dict.fromkeys([person_id, *(row["distinct_id"] for row in merged)]))
    rows = await runner.records({"profile": people_queries.profile(project_id, ids),
                                 "identifies": people_queries.identifies(project_id, ids),
                                 "sessions": people_queries.sessions(project_id, ids, 50),
                                 "timeline": people_queries.timeline(project_id, ids, 200)})
    traits = people_queries.fold_traits([row["traits"] for row in rows["identifies"]])
    context.update(person_id=person_id, given=given, ids=ids, merged=merged, profile=(rows["profile"] or [{}])[0],
                   traits=traits, sessions=rows["sessions"], timeline=rows["timeline"])
    return render(request, "person.html", context)


async def failed(request: Request, context: dict) -> Response:
    context.update(await _failures(request, context), report=None)
    return render(request, "failed.html", context)


async def _failures(request: Request, context: dict) -> dict:
    rows = await _run(request, context, "failed")
    samples: dict[str, list] = {}
    for sample in rows["samples"]:
        samples.setdefault(sample["reason"], []).append(sample)
    return {"reasons": rows["reasons"], "samples": samples}


async def replay(request: Request, context: dict) -> Response:
    """Re-inject the project's dead letters (of one reason, or all) through the validate step as it
    is configured now; the first still-invalid event stops the replay (as ``headwater replay``)."""
    if not from_this_site(request):
        return problem(request, 403, "Refused", "a replay must be posted from this dashboard")
    form = await form_fields(request)
    reason = str(form.get("reason") or "") or None
    replayer = Replayer(request.app.state.settings, context["project"].id, reason, "stop",
                        request.app.state.revalidator)
    report = await asyncio.wait_for(replayer.run(), timeout=120)
    context.update(await _failures(request, context), report=report, replayed_reason=reason)
    return render(request, "failed.html", context)


async def sql(request: Request, context: dict) -> Response:
    of, block = request.path_params["of"], request.path_params["block"]
    if of in ADMIN_ONLY and not context["viewer"].admin:
        return problem(request, 403, "Admins only", "This SQL belongs to an admin-only page.")
    if of not in views.QUERIES or of == "live":
        return problem(request, 404, "No such view", f"There is no view {of!r} with SQL to show.")
    queries = views.QUERIES[of](context["project"].id, context["state"])
    if of == "discover" and block == "recount":
        recount = await views.discover_recount(request.app.state.runner.records, context["project"].id,
                                               context["state"])
        queries = {"recount": recount} if recount else {}
    if block not in queries:
        return problem(request, 404, "No such block", f"The {of} view has no block {block!r}.")
    text = await request.app.state.runner.sql(queries[block])
    context.update(of=of, block=block, sql_text=text)
    return render(request, "sql.html", context)


async def flow(request: Request, context: dict, problems: str = "", draft: str | None = None) -> Response:
    """The project's flow as a graph (each step, its condition, its events a minute), the catalogue of
    what the project sends with each event's schemas, and the flow document to edit."""
    project = context["project"]
    rows, lags = await asyncio.gather(_run(request, context, "flow"), group_lags(request.app.state.settings))
    try:
        steps = views.flow_steps(project.flow, rows["step_counts"], rows["dead_letters"], rows["stored"], lags)
    except FlowError as exc:  # a record from before the checks: shown, and fixed by saving a valid flow
        steps, problems = [], problems or str(exc)
    catalogue = catalogue_document(rows["catalogue"], project.event_schemas or {})
    document = json.dumps(project.flow if project.flow is not None else list(DEFAULT_FLOW), indent=2)
    context.update(steps=steps, catalogue=catalogue,
                   document=document if draft is None else draft, problems=problems,
                   editable=request.app.state.admin is not None)
    return render(request, "flow.html", context, 400 if problems and draft is not None else 200)


def change_refused(request: Request, what: str = "a change") -> Response | None:
    """The answer to a change that must not be made: not posted from this dashboard's own page, or a
    dashboard started without the project checks (read only); ``None`` when it may be made."""
    if not from_this_site(request):
        return problem(request, 403, "Refused", f"{what} must be posted from this dashboard")
    if request.app.state.admin is None:
        return problem(request, 403, "Read only", "this dashboard was started without the project checks")
    return None


async def save_flow(request: Request, context: dict) -> Response:
    """Replace the project's flow with the posted document, checked exactly as the admin API checks it."""
    if refused := change_refused(request, "a flow"):
        return refused
    draft = str((await form_fields(request)).get("flow") or "")
    try:
        document = json.loads(draft)
        await request.app.state.admin.configure(context["project"].id, {"flow": document})
    except (ValueError, ProjectError) as exc:
        return await flow(request, context, problems=str(exc), draft=draft)
    except RecursionError:  # arrays or objects nested thousands deep
        return await flow(request, context, problems="the flow document is nested too deeply", draft=draft)
    return RedirectResponse(f"/p/{context['project'].id}/flow{context['state'].query_string()}", 303)


async def destinations(request: Request, context: dict, problems: str = "", done: str = "",
                       draft: str | None = None) -> Response:
    """The project's destinations: each one's definition, its events a minute over the last hour, its
    lag and the forwarders' last word on it; pause, resume and replay from a time; the destinations
    document to edit (secrets shown as set, and kept when left so)."""
    project = context["project"]
    rows, lags = await asyncio.gather(_run(request, context, "destinations"), group_lags(request.app.state.settings))
    board = request.app.state.statuses
    statuses = {entry.get("name"): board.of(project.id, entry.get("name")) for entry in project.destinations}
    context.update(destinations=views.destination_rows(project.id, shown(project.destinations), rows["step_counts"],
                                                       statuses, lags),
                   problems=problems, done=done, editable=request.app.state.admin is not None,
                   document=json.dumps(shown(project.destinations), indent=2) if draft is None else draft)
    return render(request, "destinations.html", context, 400 if problems else 200)


async def destination_action(request: Request, context: dict) -> Response:
    """Pause, resume or replay (from a time in the form, ISO 8601 in UTC) one destination."""
    if refused := change_refused(request):
        return refused
    admin = request.app.state.admin
    action = request.path_params["action"]
    if action not in ("pause", "resume", "replay", "save"):
        return problem(request, 404, "No such action", "destinations are saved, paused, resumed or replayed")
    form = await form_fields(request)
    name = str(form.get("name") or "")
    if action == "save":
        return await _save_destinations(request, context, str(form.get("destinations") or ""))
    try:
        if action == "replay":
            since = datetime.fromisoformat(str(form.get("from") or ""))
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            offsets = await admin.replay_destination(context["project"].id, name, int(since.timestamp() * 1000))
            done = f"{name}: replaying from {since.isoformat()} (offsets {offsets})"
        else:
            await admin.set_destination_paused(context["project"].id, name, action == "pause")
            done = f"{name}: {'paused' if action == 'pause' else 'resumed'}"
    except (ValueError, ProjectError) as exc:
        return await destinations(request, context, problems=str(exc))
    return await destinations(request, context, done=done)


async def _save_destinations(request: Request, context: dict, draft: str) -> Response:
    """Replace the project's destinations with the posted document, checked as the admin API checks it."""
    try:
        document = json.loads(draft)
        await request.app.state.admin.configure(context["project"].id, {"destinations": document})
    except (ValueError, ProjectError) as exc:
        return await destinations(request, context, problems=str(exc), draft=draft)
    except RecursionError:
        return await destinations(request, context, problems="the document is nested too deeply", draft=draft)
    return RedirectResponse(f"/p/{context['project'].id}/destinations{context['state'].query_string()}", 303)


async def alerts(request: Request, context: dict, problems: str = "", done: str = "",
                 draft: str | None = None) -> Response:
    """The project's alert rules with their alerts in the range, its channels, the latest alerts, a
    "send a test" button per rule, and the rules document to edit."""
    project = context["project"]
    rows = await _run(request, context, "alerts")
    channels = [d for d in shown(project.destinations) if d.get("source") == "alerts"]
    quiet = project.alerts.get("quiet_hours") if isinstance(project.alerts, dict) else None
    context.update(rules=views.rule_rows(project.alerts, rows["by_rule"]), recent=rows["recent"], channels=channels,
                   quiet=f"{quiet.get('from')}–{quiet.get('to')} {quiet.get('tz', 'UTC')}" if isinstance(quiet, dict)
                   else "", problems=problems, done=done, editable=request.app.state.admin is not None,
                   document=json.dumps(project.alerts, indent=2) if draft is None else draft)
    return render(request, "alerts.html", context, 400 if problems else 200)


async def alert_action(request: Request, context: dict) -> Response:
    """Send a test alert of one rule, or save the rules document (checked as the admin API checks it)."""
    if refused := change_refused(request):
        return refused
    admin = request.app.state.admin
    action = request.path_params["action"]
    if action not in ("test", "save"):
        return problem(request, 404, "No such action", "alert rules are tested or saved")
    form = await form_fields(request)
    project_id = context["project"].id
    if action == "save":
        draft = str(form.get("alerts") or "")
        try:
            await admin.configure(project_id, {"alerts": json.loads(draft)})
        except (ValueError, ProjectError) as exc:
            return await alerts(request, context, problems=str(exc), draft=draft)
        except RecursionError:
            return await alerts(request, context, problems="the document is nested too deeply", draft=draft)
        return RedirectResponse(f"/p/{project_id}/alerts{context['state'].query_string()}", 303)
    rule = str(form.get("rule") or "")
    try:
        alert_id = await admin.send_test_alert(project_id, rule)
    except ProjectError as exc:
        return await alerts(request, context, problems=str(exc))
    return await alerts(request, context, done=f"{rule}: a test alert is on its way to the channels ({alert_id})")


async def tags(request: Request, context: dict, problems: str = "", done: str = "", draft: str | None = None,
               chosen: str | None = None) -> Response:
    """The project's tag manager containers: each one's draft to edit, its versions to publish and roll
    back to, a preview, and the snippet to place on the site."""
    project, containers = context["project"], request.app.state.containers
    listed = containers.summaries(project.id) if containers else []
    chosen = chosen if chosen is not None else request.query_params.get("container") or (
        listed[0]["id"] if listed else "")
    head = None
    if containers and chosen:
        with contextlib.suppress(ProjectError):
            head = containers.get(project.id, chosen)
    context.update(containers=listed, head=head, chosen=chosen, problems=problems, done=done,
                   editable=request.app.state.admin is not None and containers is not None,
                   document=draft if draft is not None else json.dumps(head["draft"] if head else
                                                                       {"variables": {}, "triggers": {}, "tags": {}},
                                                                       indent=2))
    return render(request, "tags.html", context, 400 if problems else 200)


TAG_ACTIONS = ("create", "save", "publish", "rollback", "preview")


async def tag_action(request: Request, context: dict) -> Response:
    """Create a container, save its draft, publish it, roll back to a version, or start a preview."""
    if refused := change_refused(request, "a container change"):
        return refused
    action = request.path_params["action"]
    if action not in TAG_ACTIONS:
        return problem(request, 404, "No such action", f"a container is changed by {', '.join(TAG_ACTIONS)}")
    form = await form_fields(request)
    project_id, containers = context["project"].id, request.app.state.containers
    container = str(form.get("container") or "")
    draft = str(form["definition"]) if "definition" in form else None
    try:
        if action in ("create", "save"):
            definition = json.loads(draft) if draft is not None else {}
            rev = int(form["rev"]) if str(form.get("rev") or "").isdigit() else None
            await containers.save(project_id, container, str(form.get("name") or ""), definition, rev, by="dashboard")
            done = "Draft saved: it runs nowhere until it is published (or previewed)."
        elif action == "publish":
            head = await containers.publish(project_id, container, str(form.get("note") or ""), by="dashboard")
            done = f"Version {head['published']} is published: pages get it within the scripts' cache time."
        elif action == "rollback":
            version = str(form.get("version") or "")
            head = await containers.rollback(project_id, container, int(version) if version.isdigit() else 0,
                                             by="dashboard")
            done = f"Version {head['published']} is served again."
        else:
            token = containers.preview_token(project_id, container)
            done = f"Preview: open a page of the site with ?hw_tm_preview={token} (this browser tab only)."
    except (ValueError, ProjectError) as exc:
        return await tags(request, context, problems=str(exc), draft=draft, chosen=container)
    except RecursionError:
        return await tags(request, context, problems="the document is nested too deeply", draft=draft,
                          chosen=container)
    return await tags(request, context, done=done, chosen=container)
