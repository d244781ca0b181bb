"""The console's web server (aiohttp): pages, JSON API, live updates over Server-Sent Events.

One process holds the :class:`~.view.AlertView`, rebuilt at start from the three alert
topics and kept current by one Kafka reader; every browser gets the changes pushed as SSE
(``/api/events``) the moment a record is folded, so a page never reloads or polls. KPIs are
read from InfluxDB every ``console_kpi_interval_s`` and pushed the same way.

Why SSE and not WebSocket: updates flow one way (server → browser); actions are ordinary
POSTs that carry the CSRF token like any form. SSE is plain HTTP (proxies, auth cookies and
the browser's own reconnect just work) and needs no library on either side.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from urbanbrain.kafka import ALERTS_TOPIC, AUDIT_TOPIC, SILENCES_TOPIC, TopicReader
from urbanbrain.registry import Registry
from urbanbrain.rules.registry import load_registry_csv
from urbanbrain.rules.silences import Matcher

from .audit import now_ms
from .auth import PERMISSIONS, ProxyTrust, Session, SessionStore, UserStore, csrf_ok, may
from .geo import map_document
from .kpi import KPI_FIELDS, InfluxError, InfluxReader
from .ops import Operations
from .rulesinfo import find_rule, load_watcher, rule_info
from .settings import ConsoleSettings
from .view import AlertView

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "ub_session"
PRELOGIN_COOKIE = "ub_prelogin"
#: Public without a session: the login page, its stylesheet, health.
PUBLIC = {"/login", "/static/app.css", "/livez", "/healthz", "/readyz"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_DURATION_MS = 30 * 86_400_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class Console:
    """State and handlers of one console process."""

    def __init__(self, settings: ConsoleSettings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        self.sessions = SessionStore(settings.console_session_ttl_s)
        self.proxy = ProxyTrust(settings.console_proxy_user_header,
                                settings.console_trusted_proxies)
        self.view = AlertView()
        self.ops = Operations(settings)
        self.influx = InfluxReader(settings)
        self.reader = TopicReader(settings, [ALERTS_TOPIC, AUDIT_TOPIC, SILENCES_TOPIC])
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self.kpis: dict[str, Any] = {"city": {}, "districts": {}, "at": None, "error": None}
        self.ready = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._silence_states: dict[str, str] = {}
        self.registry: Registry = Registry()
        self.rule_registry: dict[str, dict[str, Any]] = {}
        if settings.registry_path is not None and settings.registry_path.exists():
            self.registry = Registry.load(settings.registry_path)
            self.rule_registry = load_registry_csv(settings.registry_path)
        self.map_json = orjson.dumps(map_document(self.registry, settings.console_districts_path))
        self.map_gzip = gzip.compress(self.map_json, 6)
        self.map_etag = hashlib.sha256(self.map_json).hexdigest()[:20]
        self.rules = load_watcher()

    # ---------------------------------------------------------------- lifecycle
    async def startup(self, app: web.Application) -> None:
        await self.ops.start()
        await self.reader.start()
        self._tasks = [asyncio.create_task(self._follow(), name="console-follow"),
                       asyncio.create_task(self._kpi_loop(), name="console-kpis"),
                       asyncio.create_task(self._tick(), name="console-tick")]

    async def cleanup(self, app: web.Application) -> None:
        for q in list(self.clients):
            q.put_nowait(None)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.reader.stop()
        await self.ops.stop()
        await self.influx.close()

    async def _follow(self) -> None:
        """Catch up with the three topics, then fold and push every new record."""
        while True:
            try:
                self.view.apply(await self.reader.catch_up(120))
                break
            except (TimeoutError, OSError) as exc:
                log.warning("console: catching up with Kafka failed (%s); retrying", exc)
                await asyncio.sleep(1)
        self.ready = True
        self._silence_states = self._states_now()
        log.info("console ready: %d alerts firing, %d silences, %d audit records",
                 len(self.view.active(now_ms())), len(self.view.silences), len(self.view.audit))
        while True:
            try:
                records = await self.reader.poll(1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving; Kafka comes back
                log.warning("console: reading Kafka failed (%s); retrying", exc)
                await asyncio.sleep(1)
                continue
            if not records:
                continue
            ch = self.view.apply(records)
            if ch:
                self._push_changes(ch.alerts, ch.audit, ch.silences, ch.latest_ms)

    def _states_now(self) -> dict[str, str]:
        return {s["id"]: s["state"] for s in self.view.silence_list(now_ms())}

    async def _tick(self) -> None:
        """Silences start and end with time alone: push when one changed state."""
        while True:
            await asyncio.sleep(2.0)
            if not self.ready:
                continue
            states = self._states_now()
            if states != self._silence_states:
                self._silence_states = states
                fps = {a["fingerprint"] for a in self.view.active(now_ms())}
                self._push_changes(fps, [], True, 0)

    async def _kpi_loop(self) -> None:
        while True:
            try:
                k = await self.influx.kpis()
                k["error"] = None
            except InfluxError as exc:
                k = {**self.kpis, "error": str(exc)}
            self.kpis = k
            self._broadcast("kpis", self.kpis)
            await asyncio.sleep(self.settings.console_kpi_interval_s)

    # ---------------------------------------------------------------- push
    def _push_changes(self, fps: set[str], audit: list[dict[str, Any]], silences: bool,
                      latest_ms: int) -> None:
        now = now_ms()
        alerts = [a for a in (self.view.alert(fp, now) for fp in sorted(fps)) if a]
        msg: dict[str, Any] = {"alerts": alerts, "audit": audit, "counts": self.view.counts(now),
                               "t": latest_ms}
        if silences:
            msg["silences"] = self.view.silence_list(now)
        self._broadcast("update", msg)

    def _broadcast(self, event: str, data: Any) -> None:
        frame = b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for q in list(self.clients):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:  # a stuck browser: end its stream; it reconnects and
                self.clients.discard(q)  # fetches the whole state again
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    # ---------------------------------------------------------------- auth
    def _session(self, request: web.Request) -> Session | None:
        return request.get("session")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            proxy_user = self.proxy.user_from(request.remote, request.headers)
        except PermissionError as exc:
            log.warning("console: %s", exc)
            return _error(403, "proxy user header from an untrusted address")
        session = self.sessions.get(request.cookies.get(COOKIE))
        new_cookie: Session | None = None
        if proxy_user is not None and (session is None or session.user != proxy_user):
            user = self.users.get(proxy_user)
            role = user.role if user else self.settings.console_proxy_default_role
            if role == "none":
                return _error(403, f"user {proxy_user!r} has no console role")
            session = new_cookie = self.sessions.create(proxy_user, role, via_proxy=True)
        request["session"] = session
        path = request.path
        if session is None and path not in PUBLIC:
            if path != "/":  # only the page itself sends a browser to the login form
                return _error(401, "log in first")
            raise web.HTTPFound("/login")
        if request.method not in ("GET", "HEAD", "OPTIONS") and path != "/login":
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != request.host:
                return _error(403, "cross-origin request refused")
            if session is None or not csrf_ok(session, request.headers.get("X-CSRF-Token")):
                return _error(403, "missing or wrong CSRF token")
        resp = await handler(request)
        resp.headers.update(SECURITY_HEADERS)
        if new_cookie is not None:
            self._set_cookie(resp, COOKIE, new_cookie.token)
        return resp

    def _set_cookie(self, resp: web.StreamResponse, name: str, value: str,
                    max_age: int | None = None) -> None:
        resp.set_cookie(name, value, httponly=True, samesite="Strict", path="/",
                        secure=self.settings.console_secure_cookies,
                        max_age=max_age or int(self.settings.console_session_ttl_s))

    def _allowed(self, request: web.Request, action: str) -> Session:
        s = self._session(request)
        if s is None:
            raise web.HTTPUnauthorized(text="log in first")
        if not may(s.role, action):
            raise web.HTTPForbidden(
                body=orjson.dumps({"error": f"role {s.role} may not {action}"}),
                content_type="application/json")
        return s

    # ---------------------------------------------------------------- pages
    async def login_page(self, request: web.Request) -> web.Response:
        # Keep a token the browser already has: a second GET (another tab, the favicon's
        # redirect) must not invalidate the form on screen.
        token = request.cookies.get(PRELOGIN_COOKIE) or ""
        if len(token) < 32:
            token = secrets.token_urlsafe(24)
        error = request.query.get("error", "")
        html = (STATIC / "login.html").read_text().replace("{{csrf}}", token).replace(
            "{{error}}", "Wrong user name or password." if error else "")
        resp = web.Response(text=html, content_type="text/html")
        self._set_cookie(resp, PRELOGIN_COOKIE, token, max_age=600)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = request.cookies.get(PRELOGIN_COOKIE)
        sent = str(form.get("csrf", ""))
        if not token or not secrets.compare_digest(token, sent):
            return _error(403, "login form expired: reload the page")
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return _error(403, "cross-origin request refused")
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        user = await asyncio.get_running_loop().run_in_executor(
            None, self.users.authenticate, name, password)
        if user is None:
            log.warning("console: failed login for %r from %s", name[:64], request.remote)
            await asyncio.sleep(0.5)
            raise web.HTTPFound("/login?error=1")
        old = request.cookies.get(COOKIE)
        self.sessions.drop(old)
        s = self.sessions.create(user.name, user.role)
        log.info("console: %s logged in (%s)", user.name, user.role)
        resp = web.HTTPFound("/")
        self._set_cookie(resp, COOKIE, s.token)
        resp.del_cookie(PRELOGIN_COOKIE, path="/")
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.drop(request.cookies.get(COOKIE))
        resp = _json({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"app.js", "app.css", "map.js"}:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def health(self, request: web.Request) -> web.Response:
        if request.path == "/livez":
            return _json({"ok": True})
        return _json({"ready": self.ready}, 200 if self.ready else 503)

    # ---------------------------------------------------------------- read API
    async def me(self, request: web.Request) -> web.Response:
        s = self._session(request)
        assert s is not None
        return _json({"user": s.user, "role": s.role, "csrf": s.csrf, "via_proxy": s.via_proxy,
                      "can": sorted(PERMISSIONS.get(s.role, ()))})

    async def state(self, request: web.Request) -> web.Response:
        now = now_ms()
        return _json({
            "ready": self.ready, "now": now,
            "alerts": self.view.active(now), "resolved": self.view.recent_resolved(now, 50),
            "silences": self.view.silence_list(now), "audit": self.view.audit_list(limit=200),
            "counts": self.view.counts(now), "kpis": self.kpis,
            "kpi_fields": KPI_FIELDS,
        })

    async def map(self, request: web.Request) -> web.Response:
        headers = {"ETag": self.map_etag, "Cache-Control": "private, no-cache",
                   "Content-Type": "application/json", "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == self.map_etag:
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=self.map_gzip, headers={**headers,
                                                             "Content-Encoding": "gzip"})
        return web.Response(body=self.map_json, headers=headers)

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no", **SECURITY_HEADERS})
        await resp.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2000)
        self.clients.add(q)
        try:
            await resp.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), 15.0)
                except TimeoutError:
                    frame = b": keep-alive\n\n"
                if frame is None:
                    break
                if self.sessions.get(request.cookies.get(COOKIE)) is None and not (
                        self._session(request) and self._session(request).via_proxy):
                    break  # logged out or expired: stop pushing
                await resp.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(q)
        return resp

    async def audit(self, request: web.Request) -> web.Response:
        target = request.query.get("target") or None
        return _json(self.view.audit_list(target, limit=int(request.query.get("limit", 200))))

    async def sensor(self, request: web.Request) -> web.Response:
        sid = request.match_info["sensor"]
        s = self.registry.get(sid)
        attrs = self.rule_registry.get(sid, {})
        domain = s.domain if s else str(request.query.get("domain", ""))
        now = now_ms()
        alerts = [self.view.describe(ep, now) for ep in self.view.episodes.values()
                  if ep.labels.get("sensor") == sid]
        alerts.sort(key=lambda a: -a["seen_ms"])
        rules = [r.id for r in self.rules.ruleset.rules
                 if r.scope == "sensor" and r.selector.matches(sid, attrs or {"domain": domain})]
        try:
            series = await self.influx.series(sid, domain, self.settings.console_series_range)
            error = None
        except (InfluxError, ValueError) as exc:
            series, error = {"time": []}, str(exc)
        return _json({"sensor": sid, "attrs": {k: v for k, v in attrs.items()
                                               if k != "neighbours"},
                      "domain": domain, "district": s.district if s else None,
                      "series": series, "range": self.settings.console_series_range,
                      "alerts": alerts[:20], "rules": rules, "error": error})

    async def rule(self, request: web.Request) -> web.Response:
        self.rules.poll()
        r = find_rule(self.rules.ruleset, request.match_info["rule"])
        if r is None:
            return _error(404, "no such rule loaded")
        info = rule_info(r, self.rule_registry or None)
        info["firing"] = self.view.firing_by_rule().get(r.id, 0)
        return _json(info)

    async def rules_list(self, request: web.Request) -> web.Response:
        self.rules.poll()
        firing = self.view.firing_by_rule()
        out = []
        for r in self.rules.ruleset.rules:
            info = rule_info(r, self.rule_registry or None)
            info.pop("source")
            info["firing"] = firing.get(r.id, 0)
            out.append(info)
        return _json(out)

    # ---------------------------------------------------------------- actions
    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def alert_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        s = self._allowed(request, action)
        ep = self.view.find(request.match_info["fp"])
        if ep is None:
            return _error(404, "no such alert")
        body = await self._body(request)
        text = str(body.get("text", ""))[:2000]
        if action in ("comment", "resolve") and not text.strip():
            return _error(400, f"{action}: say why (text)")
        try:
            rec = await self.ops.alert_action(action, ep.fingerprint, ep.starts_at, user=s.user,
                                              role=s.role, text=text)
        except ValueError as exc:
            return _error(400, str(exc))
        return _json({"ok": True, "audit": rec.to_dict()})

    async def create_silence(self, request: web.Request) -> web.Response:
        s = self._allowed(request, "silence")
        body = await self._body(request)
        now = now_ms()
        try:
            matchers = [str(m) for m in body.get("matchers") or []]
            for m in matchers:
                Matcher.parse(m)
            if "ends_at" in body:
                ends = int(body["ends_at"])
            else:
                ends = now + int(float(body.get("duration_s", 0)) * 1000)
            if ends <= now or ends - now > MAX_DURATION_MS:
                raise ValueError("a silence must end in the future, within 30 days")
            silence = await self.ops.silence(matchers, ends_at=ends, user=s.user, role=s.role,
                                             comment=str(body.get("comment", ""))[:2000])
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return _json({"ok": True, "silence": silence.to_dict()})

    async def expire_silence(self, request: web.Request) -> web.Response:
        s = self._allowed(request, "expire")
        silence = self.view.silences.get(request.match_info["id"])
        if silence is None:
            return _error(404, "no such silence")
        body = await self._body(request)
        ended = await self.ops.expire(silence, user=s.user, role=s.role,
                                      text=str(body.get("text", ""))[:2000])
        return _json({"ok": True, "silence": ended.to_dict()})


def make_app(settings: ConsoleSettings, users: UserStore) -> web.Application:
    console = Console(settings, users)
    app = web.Application(middlewares=[console.middleware], client_max_size=64 * 1024)
    app["console"] = console
    app.on_startup.append(console.startup)
    app.on_cleanup.append(console.cleanup)
    r = app.router
    r.add_get("/login", console.login_page)
    r.add_post("/login", console.login)
    r.add_post("/logout", console.logout)
    r.add_get("/", console.index)
    r.add_get("/static/{name}", console.static)
    for p in ("/livez", "/healthz", "/readyz"):
        r.add_get(p, console.health)
    r.add_get("/api/me", console.me)
    r.add_get("/api/state", console.state)
    r.add_get("/api/map", console.map)
    r.add_get("/api/events", console.events)
    r.add_get("/api/audit", console.audit)
    r.add_get("/api/sensors/{sensor}", console.sensor)
    r.add_get("/api/rules", console.rules_list)
    r.add_get("/api/rules/{rule:.+}", console.rule)
    r.add_post("/api/alerts/{fp}/{action:ack|unack|assign|comment|resolve}", console.alert_action)
    r.add_post("/api/silences", console.create_silence)
    r.add_post("/api/silences/{id}/expire", console.expire_silence)
    return app


def serve(settings: ConsoleSettings, users: UserStore) -> None:
    """Run until stopped (SIGTERM/SIGINT)."""
    app = make_app(settings, users)
    log.info("console on http://%s:%d", settings.console_host, settings.console_port)
    web.run_app(app, host=settings.console_host, port=settings.console_port,
                print=None, access_log=None, shutdown_timeout=5)
