#!/usr/bin/env python3
"""Turns the soak's samples into a Markdown table and a verdict (used by scripts/soak.sh).

Usage: soak_report.py SAMPLES_TSV ERRORS_TSV SSE_STATS_JSON WARMUP_SECS HEADER
SAMPLES_TSV lines: elapsed_secs service rss_kib fds. ERRORS_TSV lines: service error_lines.
"Flat" compares the last third of the samples after warm-up with the first third: the median
RSS may grow by at most 10 % + 8 MiB (allocator noise), the median fd count by at most 10; any
ERROR or panic line, a dead service or fewer connected SSE clients than asked is "not flat".
Exit status 0 when flat, 1 otherwise.
"""

import json
import statistics
import sys


def main():
    samples_path, errors_path, sse_path, warmup, header = sys.argv[1:6]
    warmup = int(warmup)
    series = {}
    with open(samples_path) as f:
        for line in f:
            t, svc, rss, fds = line.split()
            series.setdefault(svc, []).append((int(t), int(rss), int(fds)))
    errors = {}
    with open(errors_path) as f:
        for line in f:
            svc, count = line.split()
            errors[svc] = int(count)
    with open(sse_path) as f:
        sse = json.load(f)
    wanted = int(sse.get("wanted", 0))

    rows, flat, reasons = [], True, []
    for svc in ("producer", "projector", "gateway"):
        points = [p for p in series.get(svc, []) if p[0] >= warmup]
        if len(points) < 3:
            flat = False
            reasons.append(f"{svc}: fewer than 3 samples after warm-up (died?)")
            continue
        third = max(1, len(points) // 3)
        first, last = points[:third], points[-third:]
        rss_first = statistics.median(p[1] for p in first)
        rss_last = statistics.median(p[1] for p in last)
        fd_first = statistics.median(p[2] for p in first)
        fd_last = statistics.median(p[2] for p in last)
        rss_ok = rss_last <= rss_first * 1.10 + 8 * 1024
        fd_ok = fd_last <= fd_first + 10
        err = errors.get(svc, 0)
        if not rss_ok:
            reasons.append(f"{svc}: RSS median {rss_first/1024:.1f} → {rss_last/1024:.1f} MiB")
        if not fd_ok:
            reasons.append(f"{svc}: fds median {fd_first:.0f} → {fd_last:.0f}")
        if err:
            reasons.append(f"{svc}: {err} ERROR/panicked log lines")
        flat = flat and rss_ok and fd_ok and err == 0
        mib = lambda kib: f"{kib / 1024:.1f}"
        rows.append(
            f"| {svc} | {mib(points[0][1])} | {mib(points[-1][1])} | {mib(max(p[1] for p in points))} "
            f"| {mib(rss_first)} → {mib(rss_last)} | {points[0][2]} | {points[-1][2]} "
            f"| {max(p[2] for p in points)} | {err} | {'flat' if rss_ok and fd_ok else 'GROWING'} |"
        )
    if wanted and sse.get("connected", 0) < wanted:
        flat = False
        reasons.append(f"only {sse.get('connected', 0)} of {wanted} SSE clients connected at the end")

    print(header)
    print()
    print("| service | RSS after warm-up MiB | RSS end MiB | RSS max MiB | RSS median first→last third "
          "| fds after warm-up | fds end | fds max | ERROR/panic lines | trend |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print()
    print(f"SSE clients: {sse.get('connected', 0)} connected of {wanted} at the end, "
          f"{sse.get('frames', 0)} frames received, {sse.get('reconnects', 0)} reconnects, "
          f"{sse.get('refused', 0)} refused"
          + (f" (last error: {sse['last_error']})" if sse.get("last_error") else ""))
    print()
    print(f"Verdict: **{'flat' if flat else 'NOT flat'}**"
          + ("" if flat else " — " + "; ".join(reasons)))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
