"""Dashboard pages at 100 000 leads: the server time of every page, as a browser loads it.

Seeds one tenant straight into Postgres — N leads (default 100 000) created over the last 90
days with a spread of stages, 20 sources, 50 campaigns and a custom field, one stage-history
entry each, one `lead.created` event and delivery each to one of three endpoints (one healthy,
one failing, one disabled; 10 % of deliveries failed, with more attempts) — then VACUUM
ANALYZE. It starts `leadgate serve`, signs in to the dashboard as a browser does (the form,
then the session cookie), and times each page: its shell (`GET /dashboard/…`) and then the
API calls its script makes, concurrently as the browser makes them. References measured in
the same run: `GET /healthz` (the HTTP floor) and an API call made with the API key instead
of the session (what the session lookup adds).

Postgres and Redis are embedded, under a temporary folder, unless --database-url and
--redis-url name servers (the database is then dropped and created again).

Usage (from the repository root):
  .venv/bin/python bench/dashboard.py [--leads 100000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import children

from gateway import db, embedded
from gateway.keys import create_key
from gateway.tenants import create_tenant, update_tenant

SEED = [
    """
INSERT INTO leads (id, tenant_id, email, first_name, last_name, phone, company, stage,
                   furthest_stage, source, campaign, ip_address, device_type, browser,
                   form_completion_percent, custom_data, created_at, updated_at)
SELECT 'lead_' || lpad(g::text, 7, '0'), $1, 'u' || g || '@bench.example', 'First' || g,
       'Last' || (g % 997), '+1415555' || lpad((g % 10000)::text, 4, '0'), 'Company ' || (g % 300),
       (ARRAY['new','contacted','qualified','proposal','won','lost'])[1 + g % 6],
       (ARRAY['new','contacted','qualified','proposal','won'])[1 + g % 5],
       'source-' || (g % 20), 'campaign-' || (g % 50), '203.0.113.' || (g % 250),
       (ARRAY['desktop','mobile','tablet'])[1 + g % 3], 'Chrome 124', g % 101,
       jsonb_build_object('vertical', (ARRAY['solar','insurance','roofing','finance'])[1 + g % 4]),
       now() - (g % 129600) * interval '1 minute', now()
FROM generate_series(1, $2::int) g
""",
    """
INSERT INTO stage_history (tenant_id, lead_id, from_stage, to_stage, at)
SELECT tenant_id, id, NULL, stage, created_at FROM leads WHERE tenant_id = $1
""",
    """
INSERT INTO endpoints (id, tenant_id, url, secret, enabled, disabled_reason,
                       consecutive_failures, failing_since)
VALUES ('ep_ok', $1, 'https://crm.example.com/hook', 'whsec_x', true, NULL, 0, NULL),
       ('ep_failing', $1, 'https://dialer.example.com/hook', 'whsec_x', true, NULL, 12,
        now() - interval '2 hours'),
       ('ep_off', $1, 'https://old.example.com/hook', 'whsec_x', false,
        'failing without a success for 5 days', 40, now() - interval '6 days')
""",
    """
INSERT INTO events (id, tenant_id, type, lead_id, body, created_at)
SELECT 'evt_' || substr(id, 6), tenant_id, 'lead.created', id, '{}', created_at
FROM leads WHERE tenant_id = $1
""",
    """
INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, lead_id, event_type, state,
                        attempt_count, tries, last_status, created_at, updated_at)
SELECT 'dlv_' || substr(id, 6), tenant_id, 'evt_' || substr(id, 6),
       CASE WHEN n % 20 = 0 THEN 'ep_failing' WHEN n % 20 = 1 THEN 'ep_off' ELSE 'ep_ok' END,
       id, 'lead.created',
       CASE WHEN n % 20 < 2 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN n % 20 < 2 THEN 4 ELSE 1 END, CASE WHEN n % 20 < 2 THEN 4 ELSE 1 END,
       CASE WHEN n % 20 < 2 THEN 500 ELSE 200 END, created_at, created_at
FROM (SELECT *, substr(id, 6)::int AS n FROM leads WHERE tenant_id = $1) l
""",
    """
INSERT INTO delivery_attempts (delivery_id, tenant_id, attempt, started_at, status, latency_ms,
                               outcome, error, response_body)
SELECT d.id, d.tenant_id, a, d.created_at + a * interval '1 second', d.last_status,
       5 + (a * 37 + length(d.id)) % 200,
       CASE WHEN d.state = 'succeeded' THEN 'succeeded'
            WHEN a = d.attempt_count THEN 'failed' ELSE 'retrying' END,
       CASE WHEN d.state = 'failed' THEN 'http_500' END, 'status ' || d.last_status
FROM deliveries d, generate_series(1, d.attempt_count) a WHERE d.tenant_id = $1
""",
]

STAGES = ("new", "contacted", "qualified", "proposal", "won", "lost")


@dataclass(frozen=True)
class Page:
    name: str
    shell: str
    calls: tuple[str, ...]


def pages(leads: int) -> list[Page]:
    lead = f"lead_{min(4242, leads):07d}"
    return [
        Page("Overview (30 days)", "/dashboard/", ("/v1/analytics?range=30d", "/v1/endpoints")),
        Page("Overview (7 days, + 30-day chart)", "/dashboard/?range=7d",
             ("/v1/analytics?range=7d", "/v1/analytics?range=30d", "/v1/endpoints")),
        Page("Pipeline board (6 columns)", "/dashboard/board",
             ("/v1/leads/stage-counts",
              *(f"/v1/leads?stage={s}&limit=20&total=false" for s in STAGES))),
        Page("All leads", "/dashboard/leads", ("/v1/leads?limit=50",)),
        Page("All leads: stage + custom field", "/dashboard/leads",
             ("/v1/leads?stage=qualified&custom.vertical=solar&limit=50",)),
        Page("All leads: search", "/dashboard/leads", ("/v1/leads?search=First4242&limit=50",)),
        Page("All leads: source, dates", "/dashboard/leads",
             ("/v1/leads?source=source-7&from=2026-01-01T00:00:00Z&limit=50",)),
        Page("A lead", f"/dashboard/leads/{lead}", (f"/v1/leads/{lead}",)),
        Page("Deliveries", "/dashboard/deliveries", ("/v1/endpoints", "/v1/deliveries?limit=50")),
        Page("Deliveries: failed, one endpoint", "/dashboard/deliveries",
             ("/v1/endpoints", "/v1/deliveries?state=failed&endpoint_id=ep_failing&limit=50")),
        Page("A delivery", f"/dashboard/deliveries/dlv_{lead[5:]}",
             (f"/v1/deliveries/dlv_{lead[5:]}",)),
        Page("Endpoints", "/dashboard/endpoints", ("/v1/endpoints",)),
    ]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(database_url: str, leads: int) -> tuple[str, str]:
    """Migrate, make the tenant and key, seed; returns the tenant id and the key."""
    await db.migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        tenant = await create_tenant(conn, "bench")
        # The limiter still runs on every request; it just never refuses the benchmark.
        await update_tenant(conn, tenant["id"], rate_limit=1_000_000_000)
        _, key = await create_key(conn, tenant["id"], ["read", "manage"])
        started = time.perf_counter()
        print(f"seeding {leads} leads, their history, events, deliveries and attempts…", flush=True)
        for statement in SEED:
            args = (tenant["id"], leads) if "$2" in statement else (tenant["id"],)
            await conn.execute(statement, *args)
        await conn.execute("VACUUM ANALYZE")
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
        return tenant["id"], key
    finally:
        await conn.close()


class Browser:
    """Requests as the dashboard's pages make them: the session cookie, same-origin.

    Every request carries an X-Request-Id naming its measurement, so the gateway's own log
    line for it (`latency_ms`, the server's time) can be found again afterwards.
    """

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.headers: dict[str, str] = {}
        self.sent = 0

    async def sign_in(self, key: str) -> None:
        async with self.http.post(
            self.base + "/dashboard/login", data={"api_key": key}, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            cookie = response.cookies["leadgate_session"].value
        self.headers = {"Cookie": f"leadgate_session={cookie}", "Sec-Fetch-Site": "same-origin"}

    async def get(self, path: str, tag: str, headers: dict[str, str] | None = None) -> float:
        self.sent += 1
        sent = {**(self.headers if headers is None else headers),
                "X-Request-Id": f"{tag}.{self.sent}"}  # fmt: skip
        started = time.perf_counter()
        async with self.http.get(self.base + path, headers=sent) as response:
            await response.read()
            assert response.status == 200, (path, response.status)
        return (time.perf_counter() - started) * 1000

    async def load(self, page: Page, tag: str) -> float:
        """The shell, then every API call at once, as the page's script makes them."""
        started = time.perf_counter()
        await self.get(page.shell, tag)
        await asyncio.gather(*(self.get(call, tag) for call in page.calls))
        return (time.perf_counter() - started) * 1000

    async def stream_opens(self, tag: str) -> float:
        """Until the live view's stream has sent its first bytes."""
        started = time.perf_counter()
        headers = {**self.headers, "X-Request-Id": tag}
        async with self.http.get(
            self.base + "/dashboard/stream/outcomes", headers=headers
        ) as response:
            await response.content.readany()
            return (time.perf_counter() - started) * 1000


@dataclass
class Row:
    name: str
    wall: list[float]  # as the client saw each load
    tags: list[str]  # one per load: the request ids of its requests start with it


async def measure(base: str, key: str, leads: int, rounds: int) -> list[Row]:
    rows: list[Row] = []
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as h:
        browser = Browser(h, base)
        await browser.sign_in(key)
        for _ in range(3):  # warm the pool, the caches and the prepared statements
            for page in pages(leads):
                await browser.load(page, "warm")

        async def row(name: str, times: int, one: Callable[[str], Awaitable[float]]) -> Row:
            made = Row(name, [], [])
            for i in range(times):
                tag = f"r{len(rows)}-{i}"
                made.tags.append(tag)
                made.wall.append(await one(tag))
            return made

        key_headers = {"Authorization": f"Bearer {key}"}
        rows.append(
            await row(
                "GET /healthz (the HTTP floor)", rounds, lambda t: browser.get("/healthz", t, {})
            )
        )
        # Interleaved, so that whatever else the machine does falls on both alike.
        by_key, by_session = (
            Row("GET /v1/leads?limit=50 with the API key", [], []),
            Row("GET /v1/leads?limit=50 with the session", [], []),
        )
        for i in range(rounds):
            for made, headers in ((by_key, key_headers), (by_session, None)):
                tag = f"r{len(rows) + (made is by_session)}-{i}"
                made.tags.append(tag)
                made.wall.append(await browser.get("/v1/leads?limit=50", tag, headers))
        rows += [by_key, by_session]
        rows.append(
            await row(
                "the shell alone (GET /dashboard/leads)",
                rounds,
                lambda t: browser.get("/dashboard/leads", t),
            )
        )
        for page in pages(leads):
            rows.append(await row(page.name, rounds, lambda t, p=page: browser.load(p, t)))
        rows.append(await row("Live view: its stream opens", rounds, browser.stream_opens))
        deep = f"/v1/leads?limit=50&offset={max(0, leads - 50)}"
        rows.append(
            await row(
                "All leads, last page by offset (the UI pages by cursor)",
                max(3, rounds // 3),
                lambda t: browser.get(deep, t),
            )
        )
    return rows  # fmt: skip


def server_times(log: str) -> dict[str, float]:
    """Each request's own time in the gateway (its log line's latency_ms), by request id."""
    times: dict[str, float] = {}
    for line in log.splitlines():
        if '"request"' not in line:
            continue
        entry = json.loads(line)
        if entry.get("event") == "request" and "latency_ms" in entry:
            times[entry["request_id"]] = entry["latency_ms"]
    return times


@contextmanager
def servers(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, str]]:
    if args.database_url and args.redis_url:
        import benchdb

        benchdb.recreate_database(args.database_url)
        yield args.database_url, args.redis_url
        return
    print("starting embedded Postgres and Redis…", flush=True)
    running = embedded.start(tmp / "servers", durable=True)
    try:
        yield running.database_url, running.redis_url
    finally:
        running.stop()


def report(rows: list[Row], log: str, leads: int) -> None:
    """Per page: the server's time and the wall time the client saw.

    A page's server time is its shell's time in the gateway plus the longest of its API calls
    (they run at once, as the browser makes them); each from the gateway's own log line.
    """
    server = server_times(log)
    print()
    print(f"{'page: its shell, then its API calls at once':<58}{'server p50':>11}{'p95':>8}"
          f"{'wall p50':>10}{'p95':>8}")  # fmt: skip
    for row in rows:
        wall = row.wall
        if row.name.startswith("Live view"):  # its log line times the whole stream
            print(f"{row.name:<58}{'—':>11}{'—':>8}"
                  f"{statistics.median(wall):>10.2f}{percentile(wall, 0.95):>8.2f}")  # fmt: skip
            continue
        work = [page_time(server, tag) for tag in row.tags]
        print(f"{row.name:<58}{statistics.median(work):>11.2f}{percentile(work, 0.95):>8.2f}"
              f"{statistics.median(wall):>10.2f}{percentile(wall, 0.95):>8.2f}")  # fmt: skip
    print(f"\n{leads} leads; {len(rows[0].wall)} timed loads of each after 3 warm-up rounds")


def page_time(server: dict[str, float], tag: str) -> float:
    """The first request of a load (the shell) plus the longest of the rest."""
    mine = sorted((int(rid.rsplit(".", 1)[1]), ms) for rid, ms in server.items()
                  if rid.startswith(tag + "."))  # fmt: skip
    return mine[0][1] + max((ms for _, ms in mine[1:]), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leadgate-bench-dash-") as folder:
        tmp = Path(folder)
        with servers(args, tmp) as (database_url, redis_url):
            _, key = asyncio.run(seed(database_url, args.leads))
            port = children.free_port()
            base = f"http://127.0.0.1:{port}"
            env = {"LEADGATE_DATABASE_URL": database_url, "LEADGATE_REDIS_URL": redis_url,
                   "LEADGATE_PORT": str(port), "LEADGATE_LOG_FORMAT": "json",
                   "PATH": str(Path(sys.executable).parent)}  # fmt: skip
            leadgate = str(Path(sys.executable).with_name("leadgate"))
            with children.running("leadgate", [leadgate, "serve"], env, base, tmp / "serve.log"):
                rows = asyncio.run(measure(base, key, args.leads, args.rounds))
            log = (tmp / "serve.log").read_text()
            problems = len(re.findall(r'"level": ?"(warning|error)"', log))
    report(rows, log, args.leads)
    print(f"gateway log: {problems} warning or error lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
