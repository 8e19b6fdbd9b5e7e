"""What tracing costs: one gateway process and one worker, with tracing off and on, alternating.

Each round runs `bench/capacity.py`'s 1x1 configuration twice, in turn: `off` (no OTEL_*
variable: nothing of OpenTelemetry is imported) and `on` (OTEL_EXPORTER_OTLP_ENDPOINT set to
`peers/otlp_sink.py`, a local collector that decodes and counts every span, so the SDK's batch
span processor and OTLP/HTTP exporter do all their real work; every postback and every
attempt sampled) and `sampled` (the same, with OTEL_TRACES_SAMPLER=parentbased_traceidratio
and OTEL_TRACES_SAMPLER_ARG=0.1: one trace in ten recorded); and, to tell where the cost is,
`unsampled` (a sampler of 0: every instrumentation in place, no span recorded) and
`unexported` (every span recorded, none exported). Reported per run: postbacks/s,
the gateway's CPU µs per postback, the worker's per delivery, Postgres' for each, and the spans
exported (warm-up included); then the medians of each mode and their change against `off`.
The collector's own CPU is not Leadgate's and is left out (it is shown as `sink cores`).

Usage: .venv/bin/python bench/tracing.py [--rounds 2] [--duration 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import urllib.request
from pathlib import Path

import capacity
import children

BENCH_DIR = Path(__file__).resolve().parent


def spans_seen(base: str) -> int:
    with urllib.request.urlopen(base + "/count", timeout=10) as response:
        return int(json.loads(response.read())["spans"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/leadgate-bench-tracing"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--modes",
        default="off,on,sampled",
        help="of off, on, sampled (10%% of traces), unsampled (0%%), unexported",
    )
    p.add_argument("--workers", type=int, default=1, help="0: the gateway alone")
    a = p.parse_args(argv)
    opts = capacity.parse_args(
        ["--duration", str(a.duration), "--warmup", str(a.warmup), "--out-dir", str(a.out_dir)]
    )
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    port = children.free_port()
    sink_argv = [sys.executable, str(BENCH_DIR / "peers" / "otlp_sink.py"), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    rows: list[tuple[str, capacity.Row, float]] = []
    sink_log = opts.out_dir / "sink.log"
    with (
        capacity.postgres(opts) as ready,
        children.running("sink", sink_argv, dict(os.environ), base, sink_log) as sink,
    ):
        print(capacity.report_header(ready), flush=True)
        on = {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_BSP_SCHEDULE_DELAY": "1000"}
        sampled = {
            **on,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        }
        # Where the cost lies: every instrumentation in place but no span recorded (a sampler
        # of 0), and every span recorded but none exported (a batch processor that never
        # fills nor fires).
        unsampled = {**sampled, "OTEL_TRACES_SAMPLER_ARG": "0"}
        unexported = {
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_BSP_SCHEDULE_DELAY": "3600000",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100000000",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100000000",
        }
        modes = {
            "off": {},
            "on": on,
            "sampled": sampled,
            "unsampled": unsampled,
            "unexported": unexported,
        }
        for round_ in range(a.rounds):
            for mode in a.modes.split(","):
                extra = modes[mode]
                before = spans_seen(base)
                row = capacity.measure(
                    ready, 1, a.workers, f"{mode}-{round_ + 1}", extra, {"sink": sink.pgid}
                )
                exported = spans_seen(base) - before
                rows.append((mode, row, exported))
                print(line(mode, row, exported), flush=True)
    print()
    print(summary(rows))
    if a.json is not None:
        a.json.write_text(json.dumps([{"mode": m, "spans": s, **dataclasses.asdict(r)}
                                      for m, r, s in rows], indent=2))  # fmt: skip
    return 0


HEADER = (
    "| run | postbacks/s | deliveries/s | p99 ms | µs/postback gw | µs/postback pg |"
    " µs/delivery wk | µs/delivery pg | spans exported | sink cores | other | load |"
)


def line(mode: str, row: capacity.Row, exported: float) -> str:
    if row.name == "off-1":
        print(HEADER + "\n|" + " --- |" * 12)
    return (
        f"| {row.name} | {row.postbacks_per_s:,.0f} | {row.deliveries_per_s:,.0f} |"
        f" {row.p99_ms:.1f} | {row.us_per_postback['gateway']:,} |"
        f" {row.us_per_postback['pg-gateway']:,} | {row.us_per_delivery.get('workers', 0):,} |"
        f" {row.us_per_delivery.get('pg-worker', 0):,} | {exported:,.0f} |"
        f" {row.cores.get('sink', 0):.2f} | {row.cores.get('other', 0):.2f} | {row.load_after} |"
    )


def summary(rows: list[tuple[str, capacity.Row, float]]) -> str:
    def median(mode: str, pick: str) -> float:
        values = []
        for m, r, _ in rows:
            if m == mode:
                values.append(
                    {
                        "rate": r.postbacks_per_s,
                        "gw": r.us_per_postback["gateway"],
                        "wk": r.us_per_delivery.get("workers", 0),
                    }[pick]
                )
        return statistics.median(values)

    modes = list(dict.fromkeys(m for m, _, _ in rows))
    lines = []
    for pick, label in (("rate", "postbacks/s"), ("gw", "gateway µs/postback"),
                        ("wk", "worker µs/delivery")):  # fmt: skip
        off = median("off", pick) if "off" in modes else None
        parts = []
        for mode in modes:
            value = median(mode, pick)
            change = f" ({(value - off) / off * 100:+.0f}%)" if off and mode != "off" else ""
            parts.append(f"{mode} {value:,.0f}{change}")
        lines.append(f"median {label}: " + ", ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
