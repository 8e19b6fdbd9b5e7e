"""The conventional stack: a Celery task per webhook, prefork worker, Redis broker, `requests`.

The task signs its payload as Leadgate does and posts it with `requests` through one
`requests.Session` per worker process (keep-alive, as a careful team would write it). Results
are ignored; the broker is the only state. The worker runs with `--pool prefork
--concurrency 8` and `--without-gossip --without-mingle --without-heartbeat`, the usual advice
for a Redis broker, so start-up does not wait for other workers.

Usage:
  BENCH_CELERY_BROKER=redis://127.0.0.1:6379/14 \
      python bench/peers/delivery_celery.py enqueue --payloads FILE
  BENCH_CELERY_BROKER=… python -m celery -A delivery_celery worker --pool prefork \
      --concurrency 8 --without-gossip --without-mingle --without-heartbeat
  (the second from bench/peers, or with it on PYTHONPATH)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import requests
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery_common import (
    TIMEOUT_SECONDS,
    Payload,
    read_payloads,
    signed_headers,
)

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/14")

app = Celery("leadgate_bench_delivery", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_session: requests.Session | None = None


def session() -> requests.Session:
    """One keep-alive session per worker process, made after the fork."""
    global _session
    if _session is None:
        _session = requests.Session()
    return _session


@app.task(name="post_webhook")
def post_webhook(payload: Payload) -> int:
    """Post one signed payload; a non-2xx answer raises (and fails the task)."""
    body = payload["body"].encode()
    response = session().post(
        payload["url"],
        data=body,
        headers=signed_headers(payload, body),
        timeout=TIMEOUT_SECONDS,
        allow_redirects=False,
    )
    response.raise_for_status()
    return response.status_code


def enqueue(payloads: list[Payload]) -> None:
    """One task per payload, queued before the worker starts."""
    with app.producer_or_acquire() as producer:
        for payload in payloads:
            post_webhook.apply_async((payload,), producer=producer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("enqueue",))
    parser.add_argument("--payloads", type=Path, required=True)
    args = parser.parse_args()
    enqueue(read_payloads(args.payloads))


if __name__ == "__main__":
    main()
