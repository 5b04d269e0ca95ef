"""The console's pages and actions: thin handlers over the controller's services.

Pages are Jinja2 templates rendered on the server; each page has a live part that
``static/console.js`` re-fetches (``?partial=1``) every ``console_poll_interval_s``. Actions are
plain POST forms (CSRF token, same-origin check, admin role) that call the same service methods
as the HTTP API, then redirect back with a message (post / redirect / get). Domain errors
become that message; nothing here reaches past the services.

Every page takes its caller from one of two dependencies: :data:`Viewer` (a signed-in session,
or the sign-in redirect) and :data:`Admin` (a signed-in admin's same-origin POST form with its
CSRF token, or the error page). What they refuse, and a page's :class:`PageError`, are answered by
the console's exception handlers (:func:`mount_console`), so no page repeats those checks.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import Counter

from cloud.api.auth import parse_admin_tokens
from cloud.api.container import CloudServices
from cloud.fleet.schemas import NodeOut
from cloud.fleet.service import parse_selector
from cloud.ui.charts import line_chart, progress_bar
from cloud.ui.sessions import COOKIE, LOGIN_COOKIE, ConsoleSession, LoginLimiter, Role, SessionStore
from cloud.ui.settings import ConsoleSettings
from contracts.errors import AutoGLMError

HERE = Path(__file__).resolve().parent
FORM_MAX_BYTES = 8 * 1024
HISTORY_S = 3600.0  # node charts: the last hour of heartbeats

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


CONSOLE_LOGINS = Counter(
    "autoglm_cloud_console_logins_total", "Console sign-in attempts by result", ["result"]
)


class LoginResult(StrEnum):
    OK = "ok"
    BAD_TOKEN = "bad_token"  # not an admin or viewer token
    REFUSED = "refused"  # cross-origin, unreadable form, expired sign-in form
    RATE_LIMITED = "rate_limited"  # 429: the client address used up console_login_burst


class RolloutAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"


class NodeState(StrEnum):
    ALL = "all"
    ONLINE = "online"
    OFFLINE = "offline"
    DRAINED = "drained"


# -- formatting helpers of the templates ------------------------------------------------------


def _ago(value: datetime | float | None) -> str:
    if value is None:
        return "never"
    ts = value.timestamp() if isinstance(value, datetime) else float(value)
    s = max(0.0, time.time() - ts)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _num(value: Any, digits: int = 1) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "—"


def _metric(value: Any) -> str:
    """A number for the analysis tables: whole numbers without decimals, others to 4 significant digits."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.4g}"


def _brief(value: Any, limit: int = 32) -> str:
    """A short text of a lineage / metrics value (dicts as k=v pairs), cut at ``limit`` characters."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_brief(v, limit)}" for k, v in value.items())
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _present(items: dict[str, Any]) -> list[tuple[str, Any]]:
    """The entries worth showing (no None, empty dicts / lists / strings)."""
    return [(k, v) for k, v in items.items() if v not in (None, "", {}, [])]


def _pct(value: Any) -> str:
    try:
        return f"{float(value) * 100:.2f} %"
    except (TypeError, ValueError):
        return "—"


class ConsoleState:
    """What the console keeps on ``app.state.console``."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(settings.console_session_ttl_s, settings.console_max_sessions)
        self.login_limiter = LoginLimiter(settings.console_login_burst, settings.console_login_refill_s)
        # Same entry format as the admin tokens; an unnamed viewer token is called viewer-<hash>.
        self.viewer_tokens = {
            t: n.replace("admin-", "viewer-", 1) if n.startswith("admin-") else n
            for t, n in parse_admin_tokens(settings.console_viewer_tokens).items()
        }
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
        )
        self.env.globals.update(
            ago=_ago,
            when=_when,
            num=_num,
            pct=_pct,
            metric=_metric,
            brief=_brief,
            present=_present,
            line_chart=line_chart,
            progress_bar=progress_bar,
        )


def mount_console(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """Serve the console at ``/ui`` (and redirect ``/`` there) unless ``console_enabled`` is off."""
    settings = settings or ConsoleSettings()
    if not settings.console_enabled:
        return
    app.state.console = ConsoleState(settings)
    # console-private exceptions: the API's own errors are not touched
    app.add_exception_handler(_SignIn, _sign_in_handler)
    app.add_exception_handler(PageError, _page_error_handler)
    app.include_router(router)
    from cloud.ui.loop_routes import router as loop_router  # the learning loop's pages

    app.include_router(loop_router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")


router = APIRouter(include_in_schema=False)


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _svc(request: Request) -> CloudServices:
    svc: CloudServices = request.app.state.services
    return svc


def _session(request: Request) -> ConsoleSession | None:
    return _state(request).sessions.get(request.cookies.get(COOKIE))


def _safe_next(target: str | None, default: str = "/ui/fleet") -> str:
    """Only redirect to the console's own pages (no open redirect)."""
    if not target or not target.startswith("/ui/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _html(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    st = _state(request)
    body = st.env.get_template(template).render(
        request=request, poll_ms=int(st.settings.console_poll_interval_s * 1000), **ctx
    )
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _page(
    request: Request, sess: ConsoleSession, template: str, partial: str, *, here: str, **ctx: Any
) -> HTMLResponse:
    """The whole page, or only its live part when the poller asks: it re-fetches ``here`` (the page's
    own URL) with ``partial=1``."""
    ctx.update(here=here, poll_url=here + ("&" if "?" in here else "?") + "partial=1")
    if request.query_params.get("partial"):
        return _html(request, partial, sess=sess, **ctx)
    return _html(request, template, sess=sess, flash=sess.take_flash(), partial_template=partial, **ctx)


def _to_login(request: Request) -> Response:
    if request.query_params.get("partial"):  # the poller: tell the page to reload into the sign-in form
        return Response("signed out", status_code=401, headers=SECURITY_HEADERS)
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?{urlencode({'next': nxt})}", status_code=303)


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(_safe_next(target), status_code=303, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form (limit checked before parsing); the first value of each field."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise PageError(415, "forms must be sent as application/x-www-form-urlencoded")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > FORM_MAX_BYTES):
        raise PageError(413, f"form larger than {FORM_MAX_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise PageError(413, f"form larger than {FORM_MAX_BYTES} bytes")
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=32
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, f"unreadable form: {exc}") from None
    return {k: v[0] for k, v in fields.items()}


class PageError(Exception):
    """A refused request or a failed page: the console's error page with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def of(cls, exc: AutoGLMError) -> PageError:
        """A domain error (unknown node, model, rollout, job …) with its status."""
        return cls(exc.status, exc.message)


class _SignIn(Exception):
    """No console session: answered with the sign-in redirect (``_to_login``)."""


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # browsers send Origin on POST; "null" (sandboxed / opaque) is refused
    o = urlsplit(origin)
    return f"{o.netloc}" == request.headers.get("host", "")


class Acting(NamedTuple):
    sess: ConsoleSession
    form: dict[str, str]


async def _viewer(request: Request) -> ConsoleSession:
    """The signed-in session (admin or viewer) of a page; none: the sign-in redirect."""
    sess = _session(request)
    if sess is None:
        raise _SignIn()
    return sess


async def _acting(request: Request) -> Acting:
    """The signed-in admin behind a POST form, with the form; refuses everything else."""
    sess = _session(request)
    if sess is None:
        raise PageError(401, "sign in first")
    if not _same_origin(request):
        raise PageError(403, "cross-origin form refused")
    form = await _form(request)
    if not sess.csrf_ok(form.get("csrf")):
        raise PageError(403, "stale or missing form token; reload the page and try again")
    if not sess.can_act:
        raise PageError(403, f"{sess.name} signed in with a viewer token: the console is read-only for it")
    return Acting(sess, form)


Viewer = Annotated[ConsoleSession, Depends(_viewer)]
Admin = Annotated[Acting, Depends(_acting)]


def _refused(request: Request, exc: PageError) -> HTMLResponse:
    return _html(
        request,
        "error.html",
        status=exc.status,
        sess=_session(request),
        status_code=exc.status,
        message=exc.message,
    )


def _page_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return _refused(request, exc)


def _sign_in_handler(request: Request, exc: Exception) -> Response:
    return _to_login(request)


# -- sign-in --------------------------------------------------------------------------------


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=307)


@router.get("/ui")
@router.get("/ui/")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=307)


def _login_page(request: Request, nxt: str, error: str = "", status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = _html(
        request, "login.html", status=status, sess=None, login_csrf=token, next=_safe_next(nxt), error=error
    )
    resp.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/ui",
        secure=request.url.scheme == "https",
        max_age=3600,
    )
    return resp


@router.get("/ui/login")
def login_form(request: Request, next: str = "/ui/fleet") -> HTMLResponse:
    return _login_page(request, next)


def _match(token: str, known: dict[str, str]) -> str | None:
    found = None
    for candidate, name in known.items():  # no early exit: the same work for every token
        if hmac.compare_digest(candidate.encode(), token.encode()):
            found = name
    return found


def _client_addr(request: Request) -> str:
    """The peer address (behind a proxy: the forwarded one, when uvicorn trusts that proxy via
    ``--forwarded-allow-ips``)."""
    return request.client.host if request.client is not None else "unknown"


@router.post("/ui/login", response_model=None)
async def login(request: Request) -> Response:
    st = _state(request)
    addr = _client_addr(request)
    # Before anything is read or compared: each attempt takes one from the address's bucket.
    if (wait := st.login_limiter.take(addr)) > 0:
        CONSOLE_LOGINS.labels(result=LoginResult.RATE_LIMITED).inc()
        limited = _login_page(
            request, "/ui/fleet", f"Too many sign-in attempts from {addr}; try again in {wait:.0f} s.", 429
        )
        limited.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return limited
    try:
        if not _same_origin(request):
            raise PageError(403, "cross-origin sign-in refused")
        form = await _form(request)
    except PageError as exc:
        CONSOLE_LOGINS.labels(result=LoginResult.REFUSED).inc()
        return _refused(request, exc)
    nxt = form.get("next", "/ui/fleet")
    pre = request.cookies.get(LOGIN_COOKIE, "")
    if not pre or not hmac.compare_digest(pre.encode(), form.get("login_csrf", "").encode()):
        CONSOLE_LOGINS.labels(result=LoginResult.REFUSED).inc()
        return _login_page(request, nxt, "The sign-in form expired; please try again.", 403)
    token = form.get("token", "").strip()
    role, name = None, None
    if token:
        if (name := _match(token, request.app.state.admin_tokens)) is not None:
            role = Role.ADMIN
        elif (name := _match(token, st.viewer_tokens)) is not None:
            role = Role.VIEWER
    if role is None or name is None:
        CONSOLE_LOGINS.labels(result=LoginResult.BAD_TOKEN).inc()
        return _login_page(
            request, nxt, "That token is not an admin or viewer token of this controller.", 401
        )
    st.login_limiter.give_back(addr)
    CONSOLE_LOGINS.labels(result=LoginResult.OK).inc()
    sess = st.sessions.create(role, name)
    resp = _redirect(nxt)
    resp.set_cookie(
        COOKIE,
        sess.sid,
        httponly=True,
        samesite="strict",
        path="/ui",
        secure=request.url.scheme == "https",
        max_age=int(st.settings.console_session_ttl_s),
    )
    resp.delete_cookie(LOGIN_COOKIE, path="/ui")
    return resp


@router.post("/ui/logout", response_model=None)
async def logout(request: Request) -> Response:
    sess = _session(request)
    if sess is not None:
        form = await _form(request)
        if not sess.csrf_ok(form.get("csrf")):
            raise PageError(403, "stale form token")
        _state(request).sessions.drop(sess.sid)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/ui")
    return resp


# -- fleet ----------------------------------------------------------------------------------


def _node_row(n: NodeOut) -> dict[str, Any]:
    m = n.metrics
    adapters = m.get("adapters") or []
    provider = m.get("provider") or ""
    if not provider and isinstance(m.get("providers"), list) and m["providers"]:
        provider = str(m["providers"][0])
    return {
        "id": n.node_id,
        "state": "drained" if n.drained else ("online" if n.online else "offline"),
        "online": n.online,
        "drained": n.drained,
        "version": n.current_version or "—",
        "desired": n.desired_version if n.desired_version and n.desired_version != n.current_version else "",
        "adapters": ", ".join(str(a) for a in adapters) if isinstance(adapters, list) else str(adapters),
        "provider": str(provider).removesuffix("ExecutionProvider") or "—",
        "variant": str(m.get("variant") or "—"),  # the precision variant served (issue 17)
        "device": str(m.get("device") or ""),
        "p99": m.get("latency_p99_ms"),
        "error_rate": m.get("error_rate"),
        "requests": m.get("requests"),
        "last_seen": n.last_seen,
        "labels": sorted(n.labels.items()),
        "last_error": n.last_error,
    }


def _filter_nodes(nodes: Iterable[NodeOut], q: str, state: NodeState, version: str) -> list[NodeOut]:
    out = []
    q = q.strip().lower()
    for n in nodes:
        if q and q not in n.node_id.lower() and not any(q in f"{k}={v}".lower() for k, v in n.labels.items()):
            continue
        if state == NodeState.ONLINE and not (n.online and not n.drained):
            continue
        if state == NodeState.OFFLINE and n.online:
            continue
        if state == NodeState.DRAINED and not n.drained:
            continue
        if version and n.current_version != version:
            continue
        out.append(n)
    return out


@router.get("/ui/fleet", response_model=None)
def fleet(
    request: Request,
    sess: Viewer,
    q: str = "",
    selector: str = "",
    state: NodeState = NodeState.ALL,
    version: str = "",
    page: int = Query(default=1, ge=1, le=100_000),
) -> Response:
    svc = _svc(request)
    error = ""
    try:
        nodes = svc.fleet.list_nodes(parse_selector(selector))
    except AutoGLMError as exc:
        nodes, error = [], exc.message
    counts = {
        "total": len(nodes),
        "online": sum(n.online and not n.drained for n in nodes),
        "offline": sum(not n.online for n in nodes),
        "drained": sum(n.drained for n in nodes),
    }
    versions: dict[str, int] = {}
    for n in nodes:
        versions[n.current_version or "none"] = versions.get(n.current_version or "none", 0) + 1
    matching = _filter_nodes(nodes, q, state, version)
    size = _state(request).settings.console_page_size
    pages = max(1, -(-len(matching) // size))
    page = min(page, pages)
    shown = matching[(page - 1) * size : page * size]
    params: dict[str, str | int] = {
        k: v
        for k, v in {"q": q, "selector": selector, "state": state.value, "version": version}.items()
        if v and v != "all"
    }
    if page > 1:
        params["page"] = page

    def page_url(n: int) -> str:
        return "/ui/fleet?" + urlencode({**{k: v for k, v in params.items() if k != "page"}, "page": n})

    return _page(
        request,
        sess,
        "fleet.html",
        "_fleet_live.html",
        rows=[_node_row(n) for n in shown],
        counts=counts,
        versions=sorted(versions.items()),
        filters={"q": q, "selector": selector, "state": state.value, "version": version},
        states=list(NodeState),
        pager={
            "page": page,
            "pages": pages,
            "first": (page - 1) * size + 1 if shown else 0,
            "last": (page - 1) * size + len(shown),
            "matching": len(matching),
            "prev": page_url(page - 1) if page > 1 else "",
            "next": page_url(page + 1) if page < pages else "",
        },
        here="/ui/fleet" + (f"?{urlencode(params)}" if params else ""),
        error=error,
        nav="fleet",
    )


@router.get("/ui/nodes/{node_id}", response_model=None)
def node_detail(request: Request, sess: Viewer, node_id: str) -> Response:
    svc = _svc(request)
    try:
        node = svc.fleet.get(node_id)
    except AutoGLMError as exc:
        raise PageError.of(exc) from exc
    samples = svc.fleet.samples([node_id], time.time() - HISTORY_S)
    charts = [
        line_chart([(s.ts, s.p99_ms) for s in samples], title="p99 latency", unit="ms"),
        line_chart(
            [(s.ts, s.error_rate * 100) for s in samples], title="error rate", unit="%", color="#dc2626"
        ),
        line_chart(
            [(s.ts, float(s.requests)) for s in samples], title="requests per heartbeat", color="#059669"
        ),
        line_chart(
            [(s.ts, s.fallback_rate * 100) for s in samples],
            title="cloud fallback",
            unit="%",
            color="#d97706",
        ),
    ]
    return _page(
        request,
        sess,
        "node.html",
        "_node_live.html",
        node=node,
        row=_node_row(node),
        charts=charts,
        samples=len(samples),
        resources=node.metrics.get("resources") or {},
        commands=svc.fleet.commands(node_id, limit=20),
        here=f"/ui/nodes/{node_id}",
        nav="fleet",
    )


@router.post("/ui/nodes/{node_id}/drain", response_model=None)
async def node_drain(request: Request, acting: Admin, node_id: str) -> Response:
    sess, form = acting
    drained = form.get("drained", "1") == "1"
    try:
        _svc(request).fleet.set_drained(node_id, drained)
        sess.flash.append(("ok", f"{node_id} {'drained' if drained else 'back in service'}"))
    except AutoGLMError as exc:
        sess.flash.append(("error", exc.message))
    return _redirect(form.get("next", "/ui/fleet"))


@router.post("/ui/nodes/{node_id}/labels", response_model=None)
async def node_labels(request: Request, acting: Admin, node_id: str) -> Response:
    sess, form = acting
    try:
        set_ = parse_selector(form.get("set", ""))
        remove = [k.strip() for k in form.get("remove", "").split(",") if k.strip()]
        _svc(request).fleet.set_labels(node_id, set_, remove)
        sess.flash.append(("ok", f"labels of {node_id} updated"))
    except AutoGLMError as exc:
        sess.flash.append(("error", exc.message))
    return _redirect(form.get("next", f"/ui/nodes/{node_id}"))


# -- registry -------------------------------------------------------------------------------


@router.get("/ui/models", response_model=None)
def models(request: Request, sess: Viewer) -> Response:
    return _page(
        request,
        sess,
        "models.html",
        "_models_live.html",
        models=_svc(request).registry.list_models(),
        here="/ui/models",
        nav="models",
    )


def _lineage_tree(versions: list[Any]) -> list[tuple[int, Any]]:
    """Versions in parent → child order with their depth (roots first, children below their parent)."""
    by_parent: dict[str | None, list[Any]] = {}
    known = {v.version for v in versions}
    for v in versions:
        parent = (v.parent or "").rpartition("@")[2]  # the registry names parents ``model@version``
        by_parent.setdefault(parent if parent in known else None, []).append(v)
    out: list[tuple[int, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for v in sorted(by_parent.get(parent, []), key=lambda x: x.created_at):
            out.append((depth, v))
            walk(v.version, depth + 1)

    walk(None, 0)
    return out


@router.get("/ui/models/{model}", response_model=None)
def model_detail(request: Request, sess: Viewer, model: str) -> Response:
    reg = _svc(request).registry
    try:
        m = reg.get_model(model)
        versions = reg.list_versions(model)
        history = reg.alias_history(model)
    except AutoGLMError as exc:
        raise PageError.of(exc) from exc
    rollouts = [r for r in _svc(request).rollouts.list_rollouts() if r.model == model][:10]
    return _page(
        request,
        sess,
        "model.html",
        "_model_live.html",
        model=m,
        tree=_lineage_tree(versions),
        history=list(reversed(history))[:50],
        rollouts=rollouts,
        here=f"/ui/models/{model}",
        nav="models",
    )


# -- rollouts -------------------------------------------------------------------------------


@router.get("/ui/rollouts", response_model=None)
def rollouts(request: Request, sess: Viewer) -> Response:
    return _page(
        request,
        sess,
        "rollouts.html",
        "_rollouts_live.html",
        rollouts=_svc(request).rollouts.list_rollouts(),
        here="/ui/rollouts",
        nav="rollouts",
    )


@router.get("/ui/rollouts/{rollout_id}", response_model=None)
def rollout_detail(request: Request, sess: Viewer, rollout_id: int) -> Response:
    try:
        r = _svc(request).rollouts.get(rollout_id)
    except AutoGLMError as exc:
        raise PageError.of(exc) from exc
    return _page(
        request,
        sess,
        "rollout.html",
        "_rollout_live.html",
        r=r,
        actions=list(RolloutAction),
        events=list(reversed(r.events)),
        here=f"/ui/rollouts/{rollout_id}",
        nav="rollouts",
    )


@router.post("/ui/rollouts/{rollout_id}/{action}", response_model=None)
async def rollout_act(request: Request, acting: Admin, rollout_id: int, action: str) -> Response:
    sess, form = acting
    if action not in RolloutAction.__members__.values():
        raise PageError(404, f"unknown rollout action {action!r} (pause, resume, promote, abort)")
    svc = _svc(request).rollouts
    reason = form.get("reason", "").strip()[:500] or f"{action} from the console"
    fn = {
        RolloutAction.PAUSE: svc.pause,
        RolloutAction.RESUME: svc.resume,
        RolloutAction.PROMOTE: svc.promote,
        RolloutAction.ABORT: svc.abort,
    }[RolloutAction(action)]
    try:
        r = fn(rollout_id, actor=sess.actor, reason=reason)
        sess.flash.append(("ok", f"rollout #{rollout_id}: {action} done, now {r.state}"))
    except AutoGLMError as exc:
        sess.flash.append(("error", f"rollout #{rollout_id}: {exc.message}"))
    return _redirect(form.get("next", f"/ui/rollouts/{rollout_id}"))
