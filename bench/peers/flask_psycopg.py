"""The conventional alternative: Flask + psycopg 3 behind gunicorn sync workers.

Each request checks the bearer key, parses the JSON body, then in one transaction looks the
lead up by its normalised email (lower(trim(email))) in its own table, updates it when found
or inserts it otherwise, and commits: one durable commit per request. It answers 201 for a
new lead and 200 for a matched one, like Leadgate. Each worker process keeps one database
connection.

It does less than Leadgate (one table, no stage history, no outbox event, no idempotency,
no phone matching), so it is a reference for the shape of the stack, not for the features.

Environment: BENCH_DATABASE_URL (postgres DSN), BENCH_API_KEY (the accepted bearer key).
Run: gunicorn -w 5 -k sync --chdir bench/peers flask_psycopg:app
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import psycopg
from flask import Flask, Response, jsonify, request
from psycopg.types.json import Jsonb

DDL = """
CREATE TABLE IF NOT EXISTS bench_flask_leads (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                   text NOT NULL,
    first_name              text,
    last_name               text,
    source                  text,
    campaign                text,
    utm_source              text,
    form_completion_percent double precision,
    custom_data             jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS bench_flask_leads_email ON bench_flask_leads (email);
"""

FIELDS = ("first_name", "last_name", "source", "campaign", "utm_source", "form_completion_percent")

SELECT_SQL = "SELECT id FROM bench_flask_leads WHERE email = lower(trim(%s)) FOR UPDATE"
UPDATE_SQL = """
UPDATE bench_flask_leads SET
    first_name = coalesce(%(first_name)s, first_name),
    last_name = coalesce(%(last_name)s, last_name),
    source = coalesce(%(source)s, source),
    campaign = coalesce(%(campaign)s, campaign),
    utm_source = coalesce(%(utm_source)s, utm_source),
    form_completion_percent = coalesce(%(form_completion_percent)s, form_completion_percent),
    custom_data = custom_data || %(custom_data)s,
    updated_at = now()
WHERE id = %(id)s
"""
INSERT_SQL = """
INSERT INTO bench_flask_leads (email, first_name, last_name, source, campaign, utm_source,
                               form_completion_percent, custom_data)
VALUES (lower(trim(%(email)s)), %(first_name)s, %(last_name)s, %(source)s, %(campaign)s,
        %(utm_source)s, %(form_completion_percent)s, %(custom_data)s)
ON CONFLICT (email) DO NOTHING
RETURNING id
"""

app = Flask(__name__)
_connection: psycopg.Connection[Any] | None = None


def connection() -> psycopg.Connection[Any]:
    """This worker's connection, opened on first use and reopened if it broke."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
    return _connection


def authorised() -> bool:
    """Whether the request carries the configured bearer key."""
    expected = "Bearer " + os.environ["BENCH_API_KEY"]
    return hmac.compare_digest(request.headers.get("Authorization", ""), expected)


def lead_params(payload: dict[str, Any]) -> dict[str, Any]:
    """The columns to write, from the posted fields."""
    params = {field: payload.get(field) for field in FIELDS}
    custom = payload.get("custom_data")
    params["custom_data"] = Jsonb(custom if isinstance(custom, dict) else {})
    params["email"] = payload["email"]
    return params


def upsert(params: dict[str, Any]) -> tuple[int, bool]:
    """Find the lead by email and update it, or insert it; return (id, created)."""
    conn = connection()
    with conn.transaction(), conn.cursor() as cur:
        row = cur.execute(SELECT_SQL, (params["email"],)).fetchone()
        if row is None:
            row = cur.execute(INSERT_SQL, params).fetchone()
            if row is not None:
                return int(row[0]), True
            # Another worker inserted it between our lookup and insert.
            row = cur.execute(SELECT_SQL, (params["email"],)).fetchone()
        assert row is not None
        cur.execute(UPDATE_SQL, {**params, "id": row[0]})
        return int(row[0]), False


@app.get("/healthz")
def healthz() -> Response:
    """Answer 200 once a worker is serving."""
    return jsonify(ok=True)


@app.post("/v1/postback")
def postback() -> tuple[Response, int]:
    """Create or update a lead from a postback."""
    if not authorised():
        return jsonify(error="unauthorized"), 401
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return jsonify(error="a JSON object is required"), 400
    email = payload.get("email")
    if not isinstance(email, str) or "@" not in email:
        return jsonify(error="email is required"), 422
    lead_id, created = upsert(lead_params(payload))
    return jsonify(id=lead_id, created=created), 201 if created else 200


def create_table(dsn: str) -> None:
    """Create the reference table (used by the benchmark driver before a run)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
