#!/usr/bin/env python3
"""Executes every query of the Grafana dashboard against a real Prometheus (its HTTP API) that
scrapes the running services: each must be valid and return data. Grafana's variables are
replaced by fixed values first; a variable this script does not know fails the check. The
layout is checked too (unique ids, panels inside the grid and not overlapping, datasource by uid).

usage: check-dashboard.py PROMETHEUS_URL DASHBOARD.json [DEADLINE_SECONDS]

A query Prometheus rejects fails at once; a query without data (no series, or only NaN, e.g. a
quantile over a histogram without recent observations) is retried until the deadline, because
scrapes and the services' work take a moment. Stdlib only."""
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Grafana's built-ins. $__rate_interval is at least four scrape intervals; the test scrapes
# every second, so one minute holds enough samples and the work done just before.
VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
# Proof that the pipeline did real work (a dashboard of zeros would also "have data").
WORK = {
    "follow-ups sent": "sum(followup_processed_total) > 0",
    "runs completed": 'sum(followup_runs_total{outcome="completed"}) > 0',
    "events relayed": "sum(followup_relay_published_total) > 0",
    "events applied": 'sum(followup_projector_events_total{outcome="applied"}) > 0',
    "SSE client connected": "sum(followup_sse_clients) > 0",
    "JSON requests served": 'sum(http_requests_total{route="/api/followup/metrics"}) > 0',
}


def substitute(expr):
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise ValueError(f"unknown variable ${name}")
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def query(base, expr):
    """Returns (error or None, number of series with a finite value)."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as err:  # 400/422: the query is invalid
        body = json.load(err)
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", 0
    data = body["data"]
    if data["resultType"] in ("vector", "matrix"):
        series = [s.get("values") or [s["value"]] for s in data["result"]]
    else:  # scalar or string: one point
        series = [[data["result"]]]
    return None, sum(any(math.isfinite(float(v)) for _, v in points) for points in series)


def panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def layout_errors(dashboard):
    """What Grafana would silently fix up or refuse: duplicate ids, panels outside the 24-column
    grid or on top of each other, a datasource named by anything but its uid."""
    errors, seen, cells = [], set(), {}
    for panel in panels(dashboard):
        title = panel.get("title")
        if panel.get("id") in seen:
            errors.append(f"panel '{title}': duplicate id {panel.get('id')}")
        seen.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        x, y, w, h = (pos.get(k, -1) for k in "xywh")
        if min(x, y) < 0 or w < 1 or h < 1 or x + w > 24:
            errors.append(f"panel '{title}': gridPos {pos} outside the grid")
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            if cell in cells:
                errors.append(f"panel '{title}' overlaps '{cells[cell]}'")
                break
            cells[cell] = title
        for target in panel.get("targets", []):
            if not isinstance(target.get("datasource"), dict) or not target["datasource"].get("uid"):
                errors.append(f"panel '{title}' {target.get('refId')}: datasource without uid")
    return errors


def main():
    base, path = sys.argv[1].rstrip("/"), sys.argv[2]
    deadline = time.monotonic() + float(sys.argv[3] if len(sys.argv) > 3 else 90)
    with open(path) as f:
        dashboard = json.load(f)
    checks = []  # (panel title, refId, expression)
    failures = layout_errors(dashboard)
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        targets = [t for t in panel.get("targets", []) if t.get("expr")]
        if not targets:
            failures.append(f"panel '{panel.get('title')}' has no query")
        for target in targets:
            try:
                checks.append((panel["title"], target["refId"], substitute(target["expr"])))
            except ValueError as err:
                failures.append(f"panel '{panel['title']}' {target['refId']}: {err}")
    checks += [(f"(work) {name}", "-", expr) for name, expr in WORK.items()]

    results = {}
    pending = list(checks)
    while pending:
        waiting = []
        for check in pending:
            title, ref, expr = check
            error, series = query(base, expr)
            if error:
                failures.append(f"panel '{title}' {ref}: invalid query {expr!r}: {error}")
            elif series == 0:
                waiting.append(check)
            else:
                results[check] = series
        pending = waiting
        if pending and time.monotonic() > deadline:
            for title, ref, expr in pending:
                failures.append(f"panel '{title}' {ref}: no data for {expr!r}")
            break
        if pending:
            time.sleep(1)

    width = max(len(title) for title, _, _ in checks)
    for check in checks:
        title, ref, _ = check
        shown = results.get(check, "FAIL")
        print(f"  {title:<{width}}  {ref}  {shown}")
    if failures:
        print(f"{path}: {len(failures)} failing queries:", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"{path}: all {len(checks) - len(WORK)} panel queries valid with data; the pipeline did work")


if __name__ == "__main__":
    main()
