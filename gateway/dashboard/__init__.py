"""The operator dashboard at /dashboard: pages drawn in the browser from the JSON API.

    views.py     sign-in, sign-out, the page shell and its static files (no domain logic)
    sessions.py  the session cookie, same-origin and CSRF checks; a session acts as its key
    live.py      delivery outcomes as server-sent events, per tenant
    templates/   the sign-in page and the shell; static/ the script and style, no build step

`install(app)` adds it all to the gateway's app, and lets the auth middleware accept a
session in place of an API key.
"""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import SESSION_AUTH
from gateway.dashboard import live, views
from gateway.dashboard.sessions import session_principal

STREAM_PATH = "/dashboard/stream/outcomes"


def install(app: web.Application) -> None:
    app[SESSION_AUTH] = session_principal
    live.install(app)
    views.add_routes(app.router)
    app.router.add_get(STREAM_PATH, live.outcomes_stream)
