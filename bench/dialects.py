"""Dialects: what templates, mappings and JavaScript-stable JSON cost, and what they cost a run.

Part 1, in process (`--part engine`): per call, the median of `--repeat` timed loops of
`--loops` calls each, for both JSONata engines (jsonatapy, the one Leadgate runs, and
jsonata-python, the pure-Python port the tests check it against):
  render          the Leaditio-style template on a 25-field lead event, evaluation only
  render+io       what the worker does per templated delivery: parse the stored event,
                  evaluate, write the body as JavaScript-stable JSON
  mapping         the SalesOS sender mapping on a SalesOS-style body
  envelope        writing an event envelope: orjson as before (`jsonio.dumps`) beside the
                  JavaScript-stable writer (`jsjson.dumps`) now used for every body sent

Part 2, end to end (`--part throughput`), on embedded Postgres and Redis (durable commits) in a
temporary folder, `leadgate worker` and `leadgate serve` as child processes:
  delivery        `--deliveries` events written to the outbox for one endpoint, then
                  `leadgate worker` started and timed until every delivery succeeded, against
                  `bench/receiver.py` answering 200 at once; with no template, and with
                  config/templates/leaditio.jsonata on the endpoint
  postback        `--seconds` of POST /v1/postback from `--clients` concurrent aiohttp clients
                  in this process, new emails; Leadgate's own field names, beside a
                  SalesOS-style body through `?mapping=salesos` (config/mappings/salesos.jsonata)
Scenarios alternate, `--rounds` times each, and each one's best round is reported: the machine
is shared, so the best of several is the least disturbed. The load generator of the postback
part shares the machine's two cores with the gateway, so its rates are below bench/ingest.py's.

Usage (from the repository root):
  .venv/bin/python bench/dialects.py [--part engine|throughput|all] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import children

from gateway import db, embedded, jsonio
from gateway.crypto import Cipher, generate_key
from gateway.dialects import jsjson
from gateway.dialects.engine import compile_expression
from gateway.dialects.templates import SAMPLE_EVENT, render
from gateway.events import Event, Outbox
from gateway.keys import create_key
from gateway.tenants import create_tenant

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LEADGATE = Path(sys.executable).parent / "leadgate"
TEMPLATE = (ROOT / "config/templates/leaditio.jsonata").read_text()
MAPPING = (ROOT / "config/mappings/salesos.jsonata").read_text()
ENGINES = ("jsonatapy", "jsonata-python")
SALESOS_BODY = {
    "contact_name": "John Doe", "company_name": "Acme Inc", "contact_email": "john@acme.com",
    "industry": "Technology", "icp_score": 85, "phone": "+14155550123",
}  # fmt: skip
# The same lead in Leadgate's own field names: what the mapping makes of SALESOS_BODY.
PLAIN_BODY = {
    "email": "john@acme.com", "first_name": "John", "last_name": "Doe", "company": "Acme Inc",
    "phone": "+14155550123", "source": "salesos",
    "custom_data": {"industry": "Technology", "icp_score": 85},
}  # fmt: skip
WRITE_BATCH = 500
# The worker's relay re-signals a delivery not sent within this long (LEADGATE_RELAY_REQUEUE_AFTER).
REQUEUE_AFTER = 30.0
# Every postback of a run is a new lead: one counter across rounds and scenarios.
_SERIAL = itertools.count()


# --- part 1: the engine, in process ---------------------------------------------------------


def per_call_us(fn: Any, loops: int, repeat: int) -> float:
    times = timeit.repeat(fn, number=loops, repeat=repeat)
    return statistics.median(times) / loops * 1e6


def engine_part(loops: int, repeat: int) -> dict[str, Any]:
    event = SAMPLE_EVENT
    stored = jsjson.dumps(event).decode()
    results: dict[str, Any] = {}
    for engine in ENGINES:
        template = compile_expression(TEMPLATE, engine)
        mapping = compile_expression(MAPPING, engine)
        n = loops if engine == "jsonatapy" else max(loops // 20, 50)
        results[engine] = {
            "render": per_call_us(lambda t=template: t.evaluate(event), n, repeat),
            "render+io": per_call_us(
                lambda t=template: jsjson.dumps(t.evaluate(jsonio.loads(stored))), n, repeat
            ),
            "mapping": per_call_us(lambda m=mapping: m.evaluate(SALESOS_BODY), n, repeat),
        }
    results["worker render()"] = per_call_us(lambda: render(stored, TEMPLATE), loops, repeat)
    results["envelope"] = {
        "jsonio.dumps": per_call_us(lambda: jsonio.dumps(event), loops * 4, repeat),
        "jsjson.dumps": per_call_us(lambda: jsjson.dumps(event), loops * 4, repeat),
    }
    return results


def engine_table(r: dict[str, Any]) -> str:
    lines = ["| per call (µs) | jsonatapy | jsonata-python |", "| --- | ---: | ---: |"]
    for what in ("render", "render+io", "mapping"):
        lines.append(f"| {what} | {r['jsonatapy'][what]:.1f} | {r['jsonata-python'][what]:.1f} |")
    lines.append(
        f"| worker `render()` (jsonatapy, cached compile) | {r['worker render()']:.1f} | |"
    )
    env = r["envelope"]
    extra = env["jsjson.dumps"] - env["jsonio.dumps"]
    lines.append(
        f"\nenvelope of a 25-field lead: jsonio.dumps {env['jsonio.dumps']:.1f} µs, "
        f"jsjson.dumps {env['jsjson.dumps']:.1f} µs (+{extra:.1f} µs per event)"
    )
    return "\n".join(lines)


# --- part 2: throughput ----------------------------------------------------------------------


async def setup(database_url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        await conn.execute("SELECT 1")
        tenant = await create_tenant(conn, "bench-dialects")
        await conn.execute("UPDATE tenants SET rate_limit = 1000000000 WHERE id = $1", tenant["id"])
        _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
        return tenant["id"], key
    finally:
        await conn.close()


async def reset(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "TRUNCATE delivery_attempts, deliveries, events, endpoints, leads, stage_history, "
            "idempotency_keys, mappings, deals, tenant_monthly_counts"
        )
    finally:
        await conn.close()


def lead(index: int, at: datetime) -> dict[str, Any]:
    data = {**SAMPLE_EVENT["data"], "id": f"lead_bench{index:010d}"}
    data["email"] = f"lead{index}@example.com"
    data["created_at"] = data["updated_at"] = at
    return data


async def write_backlog(database_url: str, tenant_id: str, count: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        # Dated in the past, all due: a backlog as after a worker outage (as bench/delivery.py).
        outbox, at = Outbox(), datetime.now(UTC) - timedelta(seconds=REQUEUE_AFTER + 5)
        for start in range(0, count, WRITE_BATCH):
            events = [
                Event("lead.created", lead(i, at), at, f"lead_bench{i:010d}")
                for i in range(start, min(start + WRITE_BATCH, count))
            ]
            async with conn.transaction():
                await outbox.write(conn, [(tenant_id, e) for e in events])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def add_endpoint(database_url: str, tenant_id: str, url: str, template: str | None) -> None:
    from gateway.endpoints.models import EndpointIn
    from gateway.endpoints.store import add_endpoint as register

    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        spec = EndpointIn(url=url, template=template)
        await register(conn, tenant_id, spec, allow_private=True, cipher=Cipher([SECRET_KEYS]))
    finally:
        await conn.close()


async def states(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT state, count(*) FROM deliveries GROUP BY state")
        return {r["state"]: r["count"] for r in rows}
    finally:
        await conn.close()


# The key every process of the run encrypts and decrypts signing secrets with.
SECRET_KEYS = os.environ.get("LEADGATE_SECRET_KEYS") or generate_key()


def env_for(servers: embedded.EmbeddedServers, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    return {
        **base,
        "LEADGATE_DATABASE_URL": servers.database_url,
        "LEADGATE_REDIS_URL": servers.redis_url,
        "LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true",
        "LEADGATE_LOG_FORMAT": "json",
        "LEADGATE_SECRET_KEYS": SECRET_KEYS,
        **extra,
    }


def delivery_round(
    servers: embedded.EmbeddedServers, tenant_id: str, count: int, template: str | None, logs: Path
) -> float:
    """Deliveries per second of one `leadgate worker` emptying a backlog of `count`."""
    asyncio.run(reset(servers.database_url))
    port = children.free_port()
    argv = [sys.executable, str(BENCH / "receiver.py"), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with children.running("receiver", argv, dict(os.environ), base, logs / "receiver.log"):
        asyncio.run(add_endpoint(servers.database_url, tenant_id, f"{base}/hook", template))
        asyncio.run(write_backlog(servers.database_url, tenant_id, count))
        worker = children.Server(
            "worker",
            children.subprocess.Popen(
                [str(LEADGATE), "worker"],
                # The relay sweeps the backlog in as bench/delivery.py has it: every 50 ms.
                env=env_for(
                    servers,
                    LEADGATE_RELAY_INTERVAL="0.05",
                    LEADGATE_RELAY_REQUEUE_AFTER=str(REQUEUE_AFTER),
                ),
                stdout=(logs / "worker.log").open("ab"),
                stderr=children.subprocess.STDOUT,
                start_new_session=True,
            ),
            "",
            logs / "worker.log",
        )
        began = time.perf_counter()
        try:
            while (now := asyncio.run(states(servers.database_url))).get("pending", 0):
                assert worker.process.poll() is None, children.log_tail(worker.log_path)
                time.sleep(0.1)
            seconds = time.perf_counter() - began
            if now.get("succeeded", 0) < count:
                print(f"  warning: not every delivery succeeded: {now}", flush=True)
            return now.get("succeeded", 0) / seconds
        finally:
            children.stop(worker)


async def postback_load(base: str, key: str, mapped: bool, clients: int, seconds: float) -> float:
    """Postbacks per second from `clients` concurrent connections for `seconds`."""
    serial = _SERIAL
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{base}/v1/postback" + ("?mapping=salesos" if mapped else "")
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(serial)
            if mapped:
                body: dict[str, Any] = {**SALESOS_BODY, "contact_email": f"m{n}@example.com"}
            else:
                body = {**PLAIN_BODY, "email": f"p{n}@example.com"}
            async with http.post(url, json=body, headers=headers) as response:
                await response.read()
                assert response.status == 201, await response.text()
            done += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return done / (time.perf_counter() - began)


async def add_mapping(database_url: str, tenant_id: str) -> None:
    from gateway.dialects.mappings import CREATE_MAPPING

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(CREATE_MAPPING, tenant_id, "salesos", MAPPING, None)
    finally:
        await conn.close()


def throughput_part(opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[float]] = {k: [] for k in
                                       ("delivery", "delivery+leaditio", "postback",
                                        "postback+mapping")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="leadgate-bench-dialects-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        servers = embedded.start(Path(tmp) / "data", durable=True)
        try:
            asyncio.run(db.migrate(servers.database_url))
            tenant_id, key = asyncio.run(setup(servers.database_url))
            for _ in range(opts.rounds):
                for name, template in (("delivery", None), ("delivery+leaditio", TEMPLATE)):
                    rate = delivery_round(servers, tenant_id, opts.deliveries, template, logs)
                    results[name].append(rate)
                    print(f"  {name}: {rate:.0f}/s", flush=True)
            port = children.free_port()
            base = f"http://127.0.0.1:{port}"
            env = env_for(servers, LEADGATE_PORT=str(port))
            with children.running("gateway", [str(LEADGATE), "serve"], env, base,
                                  logs / "gateway.log"):  # fmt: skip
                asyncio.run(reset(servers.database_url))
                asyncio.run(add_mapping(servers.database_url, tenant_id))
                asyncio.run(postback_load(base, key, True, opts.clients, 2))  # warm-up
                for _ in range(opts.rounds):
                    for name, mapped in (("postback", False), ("postback+mapping", True)):
                        rate = asyncio.run(
                            postback_load(base, key, mapped, opts.clients, opts.seconds)
                        )
                        results[name].append(rate)
                        print(f"  {name}: {rate:.0f}/s", flush=True)
        finally:
            servers.stop()
    return {name: {"best": max(rates), "rounds": rates} for name, rates in results.items()}


def throughput_table(r: dict[str, Any]) -> str:
    lines = [
        "| scenario | best of rounds (/s) | rounds | vs. without |",
        "| --- | ---: | --- | ---: |",
    ]
    for name, base in (("delivery", None), ("delivery+leaditio", "delivery"),
                       ("postback", None), ("postback+mapping", "postback")):  # fmt: skip
        best = r[name]["best"]
        rounds = ", ".join(f"{x:.0f}" for x in r[name]["rounds"])
        versus = f"{(best / r[base]['best'] - 1) * 100:+.1f}%" if base else ""
        lines.append(f"| {name} | {best:.0f} | {rounds} | {versus} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("engine", "throughput", "all"), default="all")
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--json", dest="json_path", type=Path, help="Also write the figures here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    figures: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "load": os.getloadavg()}
    if opts.part in ("engine", "all"):
        figures["engine"] = engine_part(opts.loops, opts.repeat)
        print(engine_table(figures["engine"]), flush=True)
    if opts.part in ("throughput", "all"):
        figures["throughput"] = throughput_part(opts)
        print(throughput_table(figures["throughput"]))
    figures["load_after"] = os.getloadavg()
    print(f"load average before {figures['load']}, after {figures['load_after']}")
    if opts.json_path:
        opts.json_path.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
