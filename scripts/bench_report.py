#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into the suite's results: a Markdown table and a
JSON file (median, spread, same-run baseline, ratio, target, met?) and SVG charts.

Usage:
  bench_report.py WORK_DIR OUT_DIR DATE   WORK_DIR holds one <bench>.jsonl per benchmark; writes
                                          OUT_DIR/DATE.{md,json}, latest.{md,json} and the
                                          README's generated block; exits 1 when a target is
                                          missed or a benchmark that ran left out a figure
  bench_report.py --check-readme [JSON]   exits 1 when README.md's block is not what JSON
                                          (bench/results/latest.json) generates (CI runs it)
Standard library only.
"""
import json
import os
import platform
import subprocess
import sys
from statistics import median

# figure: (label, unit shown, target (op, value) or None, baseline label, ratio target or None)
FIGURES = {
    "relay": ("Relay: outbox → JetStream acknowledged (and removed)", (">=", 50000),
              "raw pipelined async-nats publish, same messages", (">=", 0.5)),
    "projector": ("Projector: events applied and committed", (">=", 25000),
                  "bare fetch → batch insert → ack loop", (">=", 0.7)),
    "pipeline_rate": ("Pipeline end to end: lead changes committed → visible in the projection",
                      None, "commit rate of the changes, two connections", None),
    "pipeline_max_backlog": ("Pipeline end to end: largest backlog (committed, not projected)",
                             None, None, None),
    "latency_p50": ("Change → SSE frame at 1000 changes/s, p50", ("<=", 10),
                    "commit → projector's notice", None),
    "latency_p95": ("Change → SSE frame at 1000 changes/s, p95", None,
                    "commit → projector's notice", None),
    "latency_p99": ("Change → SSE frame at 1000 changes/s, p99", ("<=", 50),
                    "commit → projector's notice", None),
    "latency_max": ("Change → SSE frame at 1000 changes/s, max", None,
                    "commit → projector's notice", None),
    "latency_load_rate": ("Background load achieved during the latency runs", None, None, None),
    "fanout_all_ms": ("10 000 SSE clients: change → frame at every client", ("<=", 250),
                      "the same with one client", None),
    "fanout_kib_per_client": ("10 000 SSE clients: gateway memory per connection", ("<=", 16),
                              None, None),
    "json_p99_ms": ("GET /api/followup/metrics at 5000 req/s (oha), p99", ("<=", 5),
                    "GET /healthz at 5000 req/s, p99", None),
    "json_p50_ms": ("GET /api/followup/metrics at 5000 req/s (oha), p50", None,
                    "GET /healthz at 5000 req/s, p50", None),
    "json_rps": ("GET /api/followup/metrics: requests/s answered 200 (offered 5000)", None,
                 None, None),
    "widget_ms": ("Widget: first figures in Chromium after navigation start (median of 30)",
                  ("<=", 100), "the browser's first contentful paint", None),
    "producer_run_s": ("Producer run: 1 M leads, 100 k due, log mailer", ("<=", 20), None, None),
    "snapshot_s": ("Projector snapshot of a populated CRM: 1 M leads (first start, rebuild)",
                   ("<=", 30), "the snapshot's reads alone, one REPEATABLE READ transaction",
                   None),
    "metrics_cpu_relay": ("/metrics at 1 s scrapes: relay (producer), % of a core", ("<", 1),
                          "whole stack under 1000 changes/s, % of a core", None),
    "metrics_cpu_projector": ("/metrics at 1 s scrapes: projector, % of a core", ("<", 1),
                              "whole stack under 1000 changes/s, % of a core", None),
    "metrics_cpu_gateway": ("/metrics at 1 s scrapes: gateway, % of a core", ("<", 1),
                            "whole stack under 1000 changes/s, % of a core", None),
    "replicas_rate_1": ("Replicas: changes committed → projected, 1 producer + 1 projector + 1 gateway",
                        None, None, None),
    "replicas_rate_2": ("Replicas: changes committed → projected, 2 + 2 + 2", None,
                        "the same with 1 + 1 + 1", None),
    "replicas_projector_failover_s": ("Replicas: working projector SIGKILLed → a new change projected",
                                      ("<=", 10), None, None),
    "replicas_projector_complete_s": ("Replicas: projector SIGKILLed → projection complete (its unacked batches after ack_wait)",
                                      None, None, None),
    "replicas_relay_failover_s": ("Replicas: relaying producer SIGKILLed → a new change published",
                                  ("<=", 10), None, None),
    "replicas_lost": ("Replicas: changes lost or different after both failovers", ("<=", 0),
                      None, None),
    "replicas_sse_p50_a": ("Replicas: change → SSE frame on gateway a, p50", None, None, None),
    "replicas_sse_p50_b": ("Replicas: change → SSE frame on gateway b, p50", None,
                           "the same on gateway a", None),
    "replicas_sse_max_a": ("Replicas: change → SSE frame on gateway a, max", None, None, None),
    "replicas_sse_max_b": ("Replicas: change → SSE frame on gateway b, max", None,
                           "the same on gateway a", None),
    "replicas_sse_differing": ("Replicas: SSE frames (of clients on two gateways) with other figures than the rest",
                               ("<=", 0), None, None),
}

FIGURES.update({
    "whole_tx20k_rate": ("Whole pipeline (3 processes): 20 000 rows in one transaction, "
                         "commit → SSE frame", (">=", 25000),
                         "serial ceiling 1/(1/relay alone + 1/projector alone)", None),
    "whole_tx20k_relay_alone": ("Whole pipeline: relay alone, 20 000 rows (projector stopped)",
                                None, "raw async-nats publish, same count and size", None),
    "whole_tx20k_projector_alone": ("Whole pipeline: projector alone, 20 000 events waiting",
                                    None, "bare fetch → ack loop, no database", None),
    "whole_tx100k_rate": ("Whole pipeline (3 processes): 100 000 rows in one transaction, "
                          "commit → SSE frame", (">=", 25000),
                          "serial ceiling 1/(1/relay alone + 1/projector alone)", None),
    "whole_tx100k_relay_alone": ("Whole pipeline: relay alone, 100 000 rows (projector stopped)",
                                 None, "raw async-nats publish, same count and size", None),
    "whole_tx100k_projector_alone": ("Whole pipeline: projector alone, 100 000 events waiting",
                                     None, "bare fetch → ack loop, no database", None),
    "whole_small_rate": ("Whole pipeline: one-lead transactions from 8 writers, committed → "
                         "projected", None, "the writers' commit rate", (">=", 0.8)),
    "insights_list_p99_ms": ("Lists on 1 M leads at 500 req/s: list page p99", ("<=", 20),
                             "figures p99 beside it", None),
    "insights_history_p99_ms": ("Lists on 1 M leads at 500 req/s: history p99", ("<=", 10),
                                "figures p99 beside it", None),
    "insights_figures_p99_ms": ("Lists on 1 M leads at 500 req/s: figures p99", None, None, None),
})

# Which benchmark of scripts/bench.sh emits each figure: a benchmark that ran and left one out
# fails the suite (no figure is dropped silently).
BENCH_OF = {
    "relay": "relay", "projector": "projector", "snapshot_s": "snapshot",
    "producer_run_s": "producer",
    **{f: "pipeline" for f in ("pipeline_rate", "pipeline_max_backlog")},
    **{f: "latency" for f in FIGURES if f.startswith("latency_")},
    **{f: "fanout" for f in ("fanout_all_ms", "fanout_kib_per_client")},
    **{f: "json" for f in FIGURES if f.startswith("json_")},
    "widget_ms": "widget",
    **{f: "metrics" for f in FIGURES if f.startswith("metrics_cpu_")},
    **{f: "whole" for f in FIGURES if f.startswith("whole_")},
    **{f: "insights" for f in FIGURES if f.startswith("insights_")},
    **{f: "replicas" for f in FIGURES if f.startswith("replicas_")},
}
assert set(BENCH_OF) == set(FIGURES), set(FIGURES) ^ set(BENCH_OF)

OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def fmt(x):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_at_report": open("/proc/loadavg").read().split()[:3],
        "git_commit": sh("git rev-parse --short HEAD"),
        "git_dirty": bool(sh("git status --porcelain -- . ':!bench/results'")),
        "rustc": sh("rustc --version"),
        "postgres": sh("psql \"${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}\" -Atc 'show server_version'"),
        "nats_server": sh("nats-server --version"),
        "oha": sh("oha --version"),
        "chromium": sh("chromium --version"),
    }


def load(work):
    samples, series, meta = {}, {}, {}
    for name in sorted(os.listdir(work)):
        if not name.endswith(".jsonl"):
            continue
        for line in open(os.path.join(work, name)):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("bench") == "_meta":
                meta[rec["name"]] = rec
            elif "series" in rec:
                series.setdefault(rec["series"], []).append(rec)
            elif "figure" in rec:
                samples.setdefault(rec["figure"], []).append(rec)
    return samples, series, meta


def summarise(samples, meta):
    """One row per figure with samples, and a `missing` row per figure of a benchmark that ran
    (its `_meta` line is there) but did not emit it."""
    rows = []
    for figure, (label, target, base_label, ratio_target) in FIGURES.items():
        recs = samples.get(figure)
        if not recs:
            if BENCH_OF[figure] in meta:
                rows.append({"figure": figure, "label": label, "missing": True, "met": False,
                             "target": target, "ratio_target": ratio_target})
            continue
        values = [r["value"] for r in recs]
        bases = [r["baseline"] for r in recs if r.get("baseline") is not None]
        ratios = [r["value"] / r["baseline"] for r in recs if r.get("baseline")]
        row = {
            "figure": figure, "label": label, "unit": recs[0]["unit"], "runs": values,
            "median": median(values), "min": min(values), "max": max(values),
            "baseline_label": base_label, "baselines": bases,
            "baseline_median": median(bases) if bases else None,
            "ratio_median": median(ratios) if ratios else None,
            "target": target, "ratio_target": ratio_target,
        }
        met = None
        if target:
            met = OPS[target[0]](row["median"], target[1])
        if ratio_target and row["ratio_median"] is not None:
            ok = OPS[ratio_target[0]](row["ratio_median"], ratio_target[1])
            met = ok if met is None else (met and ok)
        row["met"] = met
        rows.append(row)
    return rows


# ---- SVG -------------------------------------------------------------------------------------
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def nice_max(v):
    if v <= 0:
        return 1
    import math
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def svg_chart(title, xlabel, ylabel, lines, vlines=(), xmax=None, ymax=None, w=760, h=380):
    """lines: [(name, [(x, y)], color)]; vlines: [(x, label)]."""
    ml, mr, mt, mb = 70, 20, 40, 50
    pw, ph = w - ml - mr, h - mt - mb
    xs = [x for _, pts, _ in lines for x, _ in pts] or [1]
    ys = [y for _, pts, _ in lines for _, y in pts] or [1]
    xmax = nice_max(xmax or max(xs))
    ymax = nice_max(ymax or max(ys))

    def px(x):
        return ml + pw * min(x, xmax) / xmax

    def py(y):
        return mt + ph - ph * min(y, ymax) / ymax

    def tick(v):
        return f"{v:,.0f}".replace(",", " ") if v == int(v) else f"{v:g}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{title}</text>']
    for i in range(6):
        gx, gy = xmax * i / 5, ymax * i / 5
        out.append(f'<line x1="{px(gx):.1f}" y1="{mt}" x2="{px(gx):.1f}" y2="{mt + ph}" '
                   f'stroke="#eee"/><text x="{px(gx):.1f}" y="{mt + ph + 16}" '
                   f'text-anchor="middle">{tick(gx)}</text>')
        out.append(f'<line x1="{ml}" y1="{py(gy):.1f}" x2="{ml + pw}" y2="{py(gy):.1f}" '
                   f'stroke="#eee"/><text x="{ml - 6}" y="{py(gy) + 4:.1f}" '
                   f'text-anchor="end">{tick(gy)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 10}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="16" y="{mt + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {mt + ph / 2})">{ylabel}</text>')
    for x, label in vlines:
        if x <= xmax:
            out.append(f'<line x1="{px(x):.1f}" y1="{mt}" x2="{px(x):.1f}" y2="{mt + ph}" '
                       f'stroke="#888" stroke-dasharray="4 3"/><text x="{px(x) + 3:.1f}" '
                       f'y="{mt + ph - 6}" fill="#555">{label}</text>')
    for i, (name, pts, color) in enumerate(lines):
        if not pts:
            continue
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        lx, ly = ml + pw - 290, mt + ph - 20 - 16 * (len(lines) - 1 - i) - 20
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 18}" y="{ly + 5}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def cdf(values):
    values = sorted(values)
    n = len(values)
    return [(v, 100.0 * (i + 1) / n) for i, v in enumerate(values)]


def charts(series, out, date):
    made = []
    lat = series.get("latency_samples", [])
    if lat:
        sse = [v for r in lat for v in r["sse_ms"]]
        notice = [v for r in lat for v in r["notice_ms"]]
        p999 = sorted(sse)[int(len(sse) * 0.999) - 1] if sse else 1
        svg = svg_chart(f"Change → SSE frame at 1000 changes/s: CDF ({len(sse)} probes, all runs)",
                        "latency (ms)", "% of changes",
                        [("commit → SSE frame at the client", cdf(sse), COLORS[0]),
                         ("commit → projector notice (baseline)", cdf(notice), COLORS[1])],
                        vlines=[(10, "p50 target"), (50, "p99 target")],
                        xmax=max(60, p999), ymax=100)
        made.append(("Latency distribution", f"{date}-latency-cdf.svg", svg))
    fan = series.get("fanout_samples", [])
    if fan:
        lines = [(f"run {r['run']}", cdf(r["ms"]), COLORS[i % 6]) for i, r in enumerate(fan)]
        svg = svg_chart("10 000 SSE clients: when each got the frame after one change (CDF)",
                        "ms after the commit", "% of clients", lines,
                        vlines=[(250, "target")], ymax=100,
                        xmax=max([260] + [v for r in fan for v in r["ms"]]))
        made.append(("Fan-out", f"{date}-fanout-cdf.svg", svg))
    tl = series.get("pipeline_timeline", [])
    if tl:
        run = tl[len(tl) // 2]
        pts = run["points"]
        committed = [(p[0], p[1]) for p in pts]
        relayed = [(p[0], p[2]) for p in pts]
        projected = [(p[0], p[3]) for p in pts]
        backlog = [(p[0], p[1] - p[3]) for p in pts]

        def rate(cum):
            res = []
            for (t0, a), (t1, b) in zip(cum, cum[1:]):
                if t1 > t0:
                    res.append((t1, (b - a) / (t1 - t0)))
            return res
        svg = svg_chart(f"Pipeline end to end (run {run['run']}): throughput over time",
                        "seconds", "changes/s",
                        [("committed", rate(committed), COLORS[0]),
                         ("relayed (left the outbox)", rate(relayed), COLORS[2]),
                         ("visible in the projection", rate(projected), COLORS[1])])
        made.append(("Pipeline throughput", f"{date}-pipeline-rate.svg", svg))
        svg = svg_chart(f"Pipeline end to end (run {run['run']}): backlog over time",
                        "seconds", "changes",
                        [("committed, not yet projected", backlog, COLORS[1]),
                         ("in the outbox (not yet relayed)",
                          [(c[0], c[1] - r[1]) for c, r in zip(committed, relayed)], COLORS[2])])
        made.append(("Pipeline backlog", f"{date}-pipeline-backlog.svg", svg))
    for _, name, svg in made:
        with open(os.path.join(out, name), "w") as f:
            f.write(svg)
    return [(title, name) for title, name, _ in made]


def markdown(date, mach, rows, meta, chart_files, series):
    lines = [f"# Benchmark suite results, {date}", "",
             "`./scripts/bench.sh` (see README, Performance). Every figure is the median of the "
             "runs; the baseline is measured in the same run on the same machine; the ratio is the "
             "median of the per-run ratios figure/baseline.", "",
             f"- Machine: {mach['cores']} cores ({mach['cpu']}), {mach['memory_gib']} GiB, "
             f"Linux {mach['kernel']}",
             f"- Commit: {mach['git_commit']}{' (with uncommitted changes)' if mach['git_dirty'] else ''}",
             f"- {mach['rustc']}; PostgreSQL {mach['postgres']}; {mach['nats_server']}; "
             f"{mach['oha'] or 'oha missing'}; {mach['chromium'] or 'Chromium missing'}",
             f"- Load average when the report was written: {' '.join(mach['load_average_at_report'])}",
             ""]
    lines += figure_table(rows)
    lines += stage_tables(series)
    lines += ["", "## Runs", "", "| benchmark | started (UTC) | seconds | exit | load average start → end |",
              "|---|---|---|---|---|"]
    for name, m in meta.items():
        lines.append(f"| {name} | {m['started']} | {m['seconds']} | {m.get('exit', '–')} | "
                     f"{m['load_start']} → {m['load_end']} |")
    lines += ["", "Per-run values:", ""]
    for r in rows:
        if r.get("missing"):
            continue
        vals = ", ".join(fmt(v) for v in r["runs"])
        bases = ", ".join(fmt(v) for v in r["baselines"])
        lines.append(f"- `{r['figure']}`: {vals} {r['unit']}" + (f" (baselines {bases})" if bases else ""))
    if chart_files:
        lines += ["", "## Charts", ""]
        for title, name in chart_files:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines) + "\n"


def target_text(r):
    sym = {">=": "≥", "<=": "≤", "<": "<"}
    target = f"{sym[r['target'][0]]} {r['target'][1]:,}".replace(",", " ") if r["target"] else "–"
    if r["ratio_target"]:
        target += f"; ratio {sym[r['ratio_target'][0]]} {r['ratio_target'][1]}"
    return target


def verdict(rows):
    """'N of M targets met' and the missed or missing figures."""
    judged = [r for r in rows if r["met"] is not None]
    failed = [r for r in judged if not r["met"]]
    return len(judged) - len(failed), len(judged), failed


def figure_table(rows):
    lines = ["| figure | target | measured (median) | spread (min – max) | runs | baseline (median) "
             "| ratio | met? |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = target_text(r)
        if r.get("missing"):
            lines.append(f"| {r['label']} | {target} | **missing**: the benchmark ran and did not "
                         f"emit it | – | 0 | – | – | **no** |")
            continue
        base = f"{fmt(r['baseline_median'])}: {r['baseline_label']}" if r["baseline_label"] else "–"
        ratio = fmt(r["ratio_median"]) if r["ratio_median"] is not None else "–"
        met = {True: "**yes**", False: "**no**", None: "–"}[r["met"]]
        lines.append(f"| {r['label']} | {target} | **{fmt(r['median'])}** {r['unit']} | "
                     f"{fmt(r['min'])} – {fmt(r['max'])} | {len(r['runs'])} | {base} | {ratio} | {met} |")
    met, judged, failed = verdict(rows)
    lines += ["", f"{met} of {judged} checks passed (each figure with a target, and each figure "
              f"a benchmark that ran should have emitted)."]
    if failed:
        lines += ["Missed or missing: " + "; ".join(f"{r['label']}" for r in failed) + "."]
    return lines


def stage_tables(series):
    """The whole-pipeline benchmark's stage split: seconds per stage as a share of the phase's
    wall time, median over the runs, one table per phase."""
    recs = series.get("whole_stages", [])
    if not recs:
        return []
    phases = {}
    for r in recs:
        phases.setdefault(r["phase"], []).append(r)
    lines = ["", "## Where the time goes (whole pipeline)", "",
             "Seconds each stage took during the phase (the processes' "
             "`followup_relay_stage_seconds_total` and `followup_projector_stage_seconds_total`), "
             "as a share of the phase's wall time, median of the runs. Stages of one process that "
             "run beside each other (relay: `delete` beside the next `publish`; projector: `fetch`, "
             "`parse`, `ack` beside the batch loop) can add up to more than 100 %. The rows "
             "`relay batches` and `projector batches` are counts, not seconds: how many batches "
             "each process took for the phase's events (its batch histogram's `_count`), and how "
             "many events that makes per batch (at most 5 000 by default).", ""]
    for phase, runs_ in phases.items():
        wall = median(r["wall_seconds"] for r in runs_)
        stages = sorted({k for r in runs_ for k in r["seconds"]})
        lines += [f"**{phase}** (wall {fmt(wall)} s):", "", "| stage | seconds | share of wall |",
                  "|---|---|---|"]
        for k in stages:
            v = median(r["seconds"].get(k, 0.0) for r in runs_)
            share = median(100 * r["seconds"].get(k, 0.0) / r["wall_seconds"] for r in runs_)
            lines.append(f"| {k} | {fmt(v)} | {share:.0f} % |")
        # Batches per process (reports from before 2026-12-01 have none): how many events a
        # transaction or a publish round carried.
        for k in sorted({k for r in runs_ for k in r.get("batches", {})}):
            count = median(r["batches"].get(k, 0.0) for r in runs_)
            size = median(r["events"] / r["batches"][k] for r in runs_ if r["batches"].get(k))
            lines.append(f"| {k} batches | {count:.0f} (median {fmt(size)} events each) | |")
        lines.append("")
    return lines


README_BEGIN = "<!-- bench-report:begin (generated by scripts/bench_report.py; do not edit) -->"
README_END = "<!-- bench-report:end -->"


def readme_block(report):
    """The README's figures: the latest report's table and verdict, nothing typed."""
    mach = report["machine"]
    lines = [README_BEGIN, "",
             f"From `bench/results/{report['date']}.md` (`./scripts/bench.sh`, commit "
             f"{mach['git_commit']}{', with uncommitted changes' if mach['git_dirty'] else ''}; "
             f"{mach['cores']} cores, {mach['cpu']}; load average per benchmark in the report):",
             ""]
    lines += figure_table(report["figures"])
    lines += ["", README_END]
    return "\n".join(lines)


def write_readme(report, path="README.md"):
    text = open(path).read()
    if README_BEGIN not in text:
        raise SystemExit(f"{path}: no line {README_BEGIN!r}")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + readme_block(report) + tail
    if new != text:
        with open(path, "w") as f:
            f.write(new)


def check_readme(json_path, path="README.md"):
    report = json.load(open(json_path))
    text = open(path).read()
    block = readme_block(report)
    if block not in text:
        sys.stderr.write(f"{path}: the benchmark block differs from what {json_path} generates; "
                         f"run `python3 scripts/bench_report.py --write-readme {json_path}`\n")
        return 1
    print(f"{path}: benchmark figures match {json_path}")
    return 0


def main():
    if sys.argv[1] == "--check-readme":
        sys.exit(check_readme(sys.argv[2] if len(sys.argv) > 2 else "bench/results/latest.json"))
    if sys.argv[1] == "--write-readme":
        write_readme(json.load(open(sys.argv[2])))
        return
    work, out, date = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    samples, series, meta = load(work)
    rows = summarise(samples, meta)
    mach = machine()
    chart_files = charts(series, out, date)
    report = {"date": date, "machine": mach, "runs": meta, "figures": rows, "series": series}
    for name in (f"{date}.json", "latest.json"):
        with open(os.path.join(out, name), "w") as f:
            json.dump(report, f, indent=1)
    md = markdown(date, mach, rows, meta, chart_files, series)
    for name in (f"{date}.md", "latest.md"):
        with open(os.path.join(out, name), "w") as f:
            f.write(md)
    print(md)
    if out == "bench/results":
        write_readme(report)
    met, judged, failed = verdict(rows)
    if failed:
        sys.stderr.write(f"{len(failed)} of {judged} checks failed (targets missed, figures missing): "
                         + "; ".join(r["figure"] for r in failed) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
