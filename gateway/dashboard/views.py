"""The dashboard's own routes: sign-in and sign-out, the page shell, and its static files.

Everything a page shows or changes goes through the JSON API (`/v1/…`) with the session
cookie, so the dashboard holds no domain logic of its own: these routes only make and end
sessions and serve the same HTML shell for every page, which its JavaScript fills in.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from gateway.appkeys import POOL, SETTINGS
from gateway.dashboard.sessions import (
    check_csrf,
    clear_cookie,
    end_session,
    find_session,
    same_origin,
    set_cookie,
    start_session,
)
from gateway.health import package_version
from gateway.http import FORM_TYPE, read_body
from gateway.keys import authenticate

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
LOGIN = Template((HERE / "templates" / "login.html").read_text())
SHELL = Template((HERE / "templates" / "shell.html").read_text())

BASE = "/dashboard/"
LOGIN_PATH = "/dashboard/login"
# The pages the shell serves; their JavaScript draws each one from the API.
PAGES = r"{page:(board|leads|leads/[^/]+|deliveries|deliveries/[^/]+|endpoints|live)}"

# Pages run only the dashboard's own files: no inline script, nothing from elsewhere, never
# framed. The shell carries a CSRF token, so no cache may keep it.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, Path]:
    """Every file the dashboard may serve, by its path under static/: nothing else is reachable."""
    found = {}
    for path in STATIC_DIR.rglob("*"):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            found[path.relative_to(STATIC_DIR).as_posix()] = path
    return found


STATIC_FILES = _static_files()


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def login_page(error: str | None = None, status: int = 200) -> web.Response:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _html(LOGIN.substitute(version=package_version(), error=shown), status)


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element: nothing in it can close the element."""
    raw = orjson.dumps(value).decode()
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def show_login(request: web.Request) -> web.Response:
    if await find_session(request) is not None:
        return _see_other(BASE)
    return login_page()


async def sign_in(request: web.Request) -> web.Response:
    """Check the posted key like any request's; make a session for it; go to the overview."""
    if not same_origin(request):
        return login_page("Sign in from this page, not from another site.", 403)
    if request.content_type != FORM_TYPE:
        return login_page("Send the sign-in form.", 415)
    try:
        form = dict(parse_qsl((await read_body(request)).decode(), errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return login_page("The sign-in form could not be read.", 400)
    key = form.get("api_key", "").strip()
    if not key or "\x00" in key:
        return login_page("Enter an API key.", 400)
    principal = await authenticate(request.app[POOL], key)
    if principal is None:
        return login_page("That API key is not valid (unknown or revoked).", 401)
    if "read" not in principal.scopes:
        return login_page("That API key lacks the read scope the dashboard needs.", 403)
    seconds = request.app[SETTINGS].dashboard_session_seconds
    session = await start_session(request.app[POOL], principal, seconds)
    response = _see_other(BASE)
    set_cookie(response, request, session)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """End the session (the form carries its CSRF token) and forget the cookie."""
    signed_in = await find_session(request)
    if signed_in is not None:
        if not same_origin(request):
            return login_page("Sign out from the dashboard, not from another site.", 403)
        form = dict(parse_qsl((await read_body(request)).decode(errors="replace")))
        check_csrf(request, signed_in, form.get("csrf_token"))
        await end_session(request.app[POOL], signed_in)
    response = _see_other(LOGIN_PATH)
    clear_cookie(response)
    return response


async def shell(request: web.Request) -> web.Response:
    """The page every dashboard URL loads; its script draws the page the URL names."""
    signed_in = await find_session(request)
    if signed_in is None:
        return _see_other(LOGIN_PATH)
    who = signed_in.principal
    session = {
        "tenant_id": who.tenant_id,
        "key_id": who.key_id,
        "scopes": sorted(who.scopes),
        "stages": list(who.pipeline.stages),
        "exit_stages": list(who.pipeline.exit_stages),
    }
    text = SHELL.substitute(
        version=package_version(),
        csrf=html.escape(signed_in.csrf_token),
        tenant_id=html.escape(who.tenant_id),
        scopes=html.escape(", ".join(sorted(who.scopes))),
        session=_script_json(session),
    )
    return _html(text)


async def to_base(request: web.Request) -> web.Response:
    return _see_other(BASE)


async def static(request: web.Request) -> web.StreamResponse:
    path = STATIC_FILES.get(request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    # Revalidated on every load (a cheap 304 by ETag), so an upgrade is never half-cached.
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES[path.suffix],
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/dashboard", to_base)
    router.add_get(BASE, shell)
    router.add_get(f"{BASE}{PAGES}", shell)
    router.add_get(LOGIN_PATH, show_login)
    router.add_post(LOGIN_PATH, sign_in)
    router.add_post("/dashboard/logout", sign_out)
    router.add_get("/dashboard/static/{path:.+}", static)
