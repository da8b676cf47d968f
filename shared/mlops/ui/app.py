"""The dashboard's Flask app: pages rendered on the server from `reads.py`, one replay action.

`create_app(ctx)` takes what the CLI's commands take (`mlops.ops.context.CliContext`: the read
clients, the bus for a replay) or anything shaped like it (the unit tests pass in-memory ports).

The replay is the one write: a POST that must carry the session's CSRF token and, when the browser
says where it comes from (Origin), come from this site; it re-publishes an archived event through
`mlops.ops.replay` and says what it did in a flash message.
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Any, Protocol
from urllib.parse import urlsplit

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for

from mlops.ops.archive import SHORT_ID
from mlops.ops.errors import OperatorError
from mlops.ops.lineage import lineage
from mlops.ops.replay import find_event, plan_replay, publish
from mlops.ports.registry import NotFoundError
from mlops.ports.specs import UnknownPipeline
from mlops.ui import charts, reads
from mlops.ui.alerts import open_alerts

SECRET_ENV = "MLOPS_UI_SECRET_KEY"


class Readers(Protocol):
    warehouse: Any
    registry: Any
    specs: Any


class UiContext(Protocol):
    @property
    def readers(self) -> Readers: ...

    @property
    def bus(self) -> Any: ...


def _page() -> int:
    text = request.args.get("page", "0")
    if not text.isdigit() or int(text) > 100_000:
        abort(400, description=f"page must be a whole number from 0 (got {text[:20]!r})")
    return int(text)


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent (an old browser, a script holding the token): the token decides
    return urlsplit(origin).netloc == request.host  # "null" (a sandboxed page) is refused too


def create_app(ctx: UiContext, secret_key: str | None = None) -> Flask:
    app = Flask(__name__)
    # Sessions (the CSRF token, flash messages) are signed with this key; one per process unless set,
    # which is right for one instance (set it from a secret for more: services/dashboard/README.md).
    app.secret_key = secret_key or os.environ.get(SECRET_ENV) or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True)
    app.jinja_env.globals.update(csrf_token=_csrf_token, short=lambda text: (text or "")[:SHORT_ID])
    app.jinja_env.filters["when"] = lambda iso: str(iso).replace("T", " ")[:19]
    app.jinja_env.filters["metric"] = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"

    def specs() -> Any:
        return ctx.readers.specs

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True}

    @app.get("/")
    def overview() -> Any:
        page = _page()
        names = sorted(specs().names())
        shown = names[page * reads.PAGE_SIZE:(page + 1) * reads.PAGE_SIZE]
        alerts = open_alerts(ctx)
        rows = reads.overview(ctx.readers.warehouse, shown, alerts.items)
        return render_template("overview.html", rows=rows, page=page, total=len(names),
                               more=len(names) > (page + 1) * reads.PAGE_SIZE, alerts=alerts)

    @app.get("/pipelines/<name>")
    def pipeline(name: str) -> Any:
        page = _page()
        try:
            spec = specs().get(name)
        except UnknownPipeline:
            abort(404, description=f"no pipeline {name!r}: the overview lists the known ones")
        warehouse = ctx.readers.warehouse
        gate = spec.promotion.metric
        history = reads.traffic_history(warehouse, name)
        latest = next((change for change in history if change.type == reads.DEPLOYED), None)
        serving = latest.split if latest else {}
        versions, more = reads.versions_page(warehouse, ctx.readers.registry, name, gate, serving, page)
        oldest_first = list(reversed(versions))
        gate_chart = charts.line_chart(
            [charts.Series(f"{gate} (candidate)", [charts.Point(f"v{v.version}", v.metric, css=v.decision,
                                                                tip=f"v{v.version} {gate} {v.metric:.4f}: {v.decision}")
                                                   for v in oldest_first if v.metric is not None])],
            title=f"{gate} per version", threshold=spec.promotion.minimum, chart_id="gate-chart")
        checks = reads.monitoring(warehouse, name)
        drift_charts = [
            (feature, measure, charts.line_chart(
                [charts.Series(f"{feature} {measure}", [charts.Point(str(t)[5:16], v, css="breached" if b else "")
                                                        for t, v, _, b in points])],
                title=f"{measure} drift of {feature}", threshold=next((th for _, _, th, _ in reversed(points)
                                                                       if th is not None), None)))
            for (feature, measure), points in checks.drift.items()]
        performance_rows = [
            (version, measure, points[-1][1], points[-1][2], points[-1][3], len(points))
            for version, measures in checks.performance.items() for measure, points in measures.items()]
        performance_chart = charts.line_chart(
            [charts.Series(f"v{version} {measure}", [charts.Point(str(t)[5:16], v) for t, v, _, _ in points])
             for version, measures in checks.performance.items() for measure, points in measures.items()
             if measure == gate] or [charts.Series(gate)],
            title=f"realized {gate} per version over time", chart_id="performance-chart") if checks.performance else ""
        alerts = open_alerts(ctx)
        own_alerts = [a for a in alerts.items or [] if getattr(a, "pipeline", None) == name]
        return render_template("pipeline.html", spec=spec, versions=versions, page=page, more=more,
                               gate_chart=gate_chart, history=history, serving=serving, checks=checks,
                               drift_charts=drift_charts, performance_rows=performance_rows,
                               performance_chart=performance_chart, alerts=alerts, own_alerts=own_alerts)

    @app.get("/runs/<run_id>")
    def run(run_id: str) -> Any:
        chain = reads.run_events(ctx.readers.warehouse, run_id)
        if not chain:
            abort(404, description=f"no archived events for run {run_id!r}")
        registered = next((c["event"] for c in chain if c["event"].type == reads.REGISTERED and c["event"].valid), None)
        report, lineage_note = None, ""
        if registered is not None:
            payload = registered.payload()
            try:
                report = lineage(ctx.readers.registry, ctx.readers.warehouse, payload["pipeline"], str(payload["version_id"]))
            except NotFoundError as error:
                lineage_note = f"no lineage: {error}"
        else:
            lineage_note = "no lineage: this run registered no model version"
        pipeline_name = next((c["event"].pipeline for c in chain if c["event"].pipeline), "")
        return render_template("run.html", run_id=run_id, chain=chain, lineage=report, lineage_note=lineage_note,
                               pipeline=pipeline_name)

    @app.get("/failures")
    def failures() -> Any:
        page = _page()
        rows, more = reads.failures(ctx.readers.warehouse, page)
        return render_template("failures.html", rows=rows, page=page, more=more)

    @app.post("/replay")
    def replay() -> Any:
        sent = request.form.get("csrf_token", "")
        if not _same_origin() or not sent or not hmac.compare_digest(sent, str(session.get("csrf", ""))):
            abort(403, description="replay refused: the form's token is missing or stale (reload the page), "
                                   "or the request came from another site")
        event_id = request.form.get("event_id", "").strip()
        back = request.form.get("next", "")
        back = back if back.startswith("/") and not back.startswith("//") else url_for("failures")
        if not event_id:
            flash("nothing replayed: no event id given", "error")
            return redirect(back, 303)
        try:
            planned = plan_replay(find_event(ctx.readers.warehouse, event_id))
            new_id = publish(ctx.bus, planned)
        except (OperatorError, ValueError) as error:  # unknown id, an event today's schema cannot read
            flash(f"nothing replayed: {error}", "error")
            return redirect(back, 303)
        flash(f"replayed {planned.original.type} {event_id[:SHORT_ID]} as new event {new_id} "
              f"(run {planned.envelope.run_id[:SHORT_ID]})", "ok")
        return redirect(back, 303)

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def client_error(error: Any) -> Any:
        return render_template("error.html", code=error.code, message=error.description), error.code

    return app
