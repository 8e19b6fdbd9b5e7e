"""Scoring's CPU cost per postback, in process: what `bench/ingest.py --scoring` measures end to
end, without the network, Postgres or a disturbed machine in the way.

Plans batches of 100 postbacks (`gateway.leads.ingest.plan`, what a gateway does between
fetching the candidates and writing) — new leads, and matches of existing ones that change
their custom data — with no rules and with `config/scoring.leaditio.json`'s ten, and prints
the CPU time per postback of each, the difference, and the difference as a share of a
postback's whole server CPU when `--server-us` (from an `ingest.py` run: server cpu ÷ req/s)
is given.

    .venv/bin/python bench/scoring.py [--batches 200] [--server-us 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.leads.ingest import STORED, Postback, plan  # noqa: E402
from gateway.scoring.models import parse_scoring  # noqa: E402
from gateway.scoring.rules import RuleSet, ruleset_of  # noqa: E402
from gateway.tenants import Pipeline  # noqa: E402

BATCH = 100
PIPELINE = Pipeline(("new", "contacted", "qualified", "proposal", "won"), ("lost",))


def rules() -> RuleSet:
    spec = parse_scoring(json.loads((ROOT / "config" / "scoring.leaditio.json").read_text()))
    config = {"version": 1, "rules": [r.model_dump() for r in spec.rules],
              "tiers": [t.model_dump() for t in spec.tiers]}  # fmt: skip
    found = ruleset_of("ten_bench", config)
    assert found is not None
    return found


def postback(i: int, scoring: RuleSet | None) -> Postback:
    """What the ingest benchmark posts, normalised."""
    values: dict[str, Any] = {
        "email": f"u{i}@bench.example", "first_name": "Ada", "last_name": "Lovelace",
        "source": "bench", "campaign": "c1", "utm_source": "google",
        "form_completion_percent": float(i % 101), "custom_data": {"visit": i},
    }  # fmt: skip
    return Postback("ten_bench", "key_bench", PIPELINE, False, None, values, None, False,
                    scoring, frozenset({"won"}))  # fmt: skip


def candidate(i: int) -> dict[str, Any]:
    """An existing lead a matched postback finds (as FETCH_CANDIDATES returns it)."""
    row: dict[str, Any] = dict.fromkeys(STORED)
    row.update(id=f"lead_{i}", tenant_id="ten_bench", furthest_stage="new", converted_at=None,
               email=f"u{i}@bench.example", stage="new", custom_data={}, opted_out_at=None,
               created_at=datetime.now(UTC), updated_at=datetime.now(UTC))  # fmt: skip
    return row


def per_postback_us(scoring: RuleSet | None, matched: bool, batches: int) -> float:
    """Median CPU µs per postback over `batches` batches of planning."""
    times = []
    for b in range(batches):
        first = b * BATCH
        postbacks = [postback(first + i, scoring) for i in range(BATCH)]
        candidates = [candidate(first + i) for i in range(BATCH)] if matched else []
        began = time.process_time()
        plan(candidates, postbacks, datetime.now(UTC))
        times.append((time.process_time() - began) / BATCH * 1e6)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--server-us", type=float, help="a postback's whole server CPU, in µs")
    opts = parser.parse_args()
    scoring = rules()
    print(f"{'postbacks':<10}{'no rules µs':>14}{'10 rules µs':>14}{'scoring µs':>12}"
          f"{'of a postback':>15}")  # fmt: skip
    for matched in (False, True):
        per_postback_us(scoring, matched, 5)  # warm the caches
        plain = per_postback_us(None, matched, opts.batches)
        scored = per_postback_us(scoring, matched, opts.batches)
        share = f"{100 * (scored - plain) / opts.server_us:.1f}%" if opts.server_us else "-"
        print(f"{'matched' if matched else 'new':<10}{plain:>14.1f}{scored:>14.1f}"
              f"{scored - plain:>12.1f}{share:>15}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
