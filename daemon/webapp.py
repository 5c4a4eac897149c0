"""The timeline page's server: a Starlette app that is a client of a running core, and nothing more.

It reads history from the core's event log (read-only), follows live events on the core's PUB socket
and passes them to each open page as server-sent events, and asks the core's control socket for
clips, speakers, status and reviews. The page itself (HTML, JS, CSS) ships in the package; nothing is
loaded from elsewhere. Loopback only by default; served anywhere else it requires a token
(docs/security.md), and every request is checked before any handler runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from voicewatch.control import ControlError, request
from voicewatch.protocol import Event
from voicewatch.reviewlog import ReviewLog
from voicewatch.security import CurveClient
from voicewatch.timeline import place, read_timeline

_LOG = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "webpage"
COOKIE = "voicewatch_token"
DEFAULT_RANGE_S = 3600.0
LISTENER_QUEUE = 1000
"""Live events waiting for one page; a page that falls this far behind is dropped (its browser reconnects
and reloads the range)."""


@dataclasses.dataclass(frozen=True)
class CoreLink:
    """Where the core is: its control and events endpoints, and its event log."""

    control: str | None
    events: str
    log_path: str | None
    curve: CurveClient | None = None

    def ask(self, payload: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        if self.control is None:
            raise ControlError("the core has no control socket (control.endpoint is null)")
        return request(self.control, payload, timeout_s=timeout_s, curve=self.curve)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """Every request passes here first: with a token, it must come with the token (once as `?token=`, which
    sets a cookie, or as `Authorization: Bearer`); served on loopback, the Host header must name loopback
    (no DNS rebinding); a POST must be JSON from this page's own origin (no cross-site requests)."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool) -> None:
        self.app, self.token, self.loopback = app, token, loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = Request(scope)
        host = req.headers.get("host", "")
        refusal: Response | None = None
        if self.loopback and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            refusal = PlainTextResponse("this page is served to loopback addresses only", 403)
        elif self.token is not None:
            offered = req.query_params.get("token")
            if offered is not None and hmac.compare_digest(offered.encode(), self.token.encode()):
                refusal = RedirectResponse(req.url.remove_query_params("token").path, 303)
                refusal.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            elif not self._carries_token(req):
                refusal = PlainTextResponse("a token is needed: open the page once as /?token=… (docs/security.md)", 401)
        if refusal is None and req.method == "POST":
            origin = req.headers.get("origin")
            if req.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                refusal = PlainTextResponse("POST a JSON body", 415)
            elif origin is not None and urlsplit(origin).netloc != host:
                refusal = PlainTextResponse("cross-origin requests are refused", 403)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _carries_token(self, req: Request) -> bool:
        assert self.token is not None
        bearer = req.headers.get("authorization", "")
        offered = bearer[7:] if bearer.startswith("Bearer ") else req.cookies.get(COOKIE, "")
        return hmac.compare_digest(offered.encode(), self.token.encode())


class LiveFeed:
    """One SUB socket on the core's events, fanned out to every open page through a bounded queue each."""

    def __init__(self, link: CoreLink) -> None:
        self.link = link
        self.listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(LISTENER_QUEUE)
        self.listeners.add(queue)
        return queue

    async def run(self) -> None:
        socket = zmq.asyncio.Context.instance().socket(zmq.SUB)
        if self.link.curve is not None:
            self.link.curve.secure(socket)
        socket.connect(self.link.events)
        for topic in ("det.", "gap.", "status."):
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            while True:
                event = Event.from_message(await socket.recv_multipart())
                self.send(live_message(event, time.time()))
        finally:
            socket.close(linger=0)

    def send(self, message: dict[str, Any]) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.listeners.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # tells that page's stream to end


def live_message(event: Event, now: float) -> dict[str, Any]:
    if event.reason == "heartbeat":
        return {"type": "heartbeat", "uptime": event.end, "at": now}
    return {"type": event.type, "id": event.id, "span": place(event, now).to_dict()}


def _range(req: Request) -> tuple[float, float]:
    try:
        now = time.time()
        t1 = float(req.query_params.get("to", now))
        t0 = float(req.query_params.get("from", t1 - DEFAULT_RANGE_S))
    except ValueError:
        raise ControlError("from and to are UTC epoch seconds") from None
    if not t0 < t1 or t1 - t0 > 31 * 86400:
        raise ControlError("the range must run forwards and span at most 31 days")
    return t0, t1


def build_app(link: CoreLink, token: str | None = None, loopback: bool = True) -> Starlette:
    feed = LiveFeed(link)

    def reviews_of(clips: list[str]) -> dict[str, dict[str, Any]]:
        if link.log_path is None or not clips:
            return {}
        try:
            log = ReviewLog(link.log_path, read_only=True)
        except sqlite3.Error:
            return {}
        try:
            found = log.recent(limit=len(clips) * 4, clips=clips)
        except sqlite3.OperationalError:  # no review yet: no table
            return {}
        finally:
            log.close()
        newest: dict[str, dict[str, Any]] = {}
        for review in found:  # newest first: the first one seen of each clip is the one that counts
            newest.setdefault(review.clip, review.to_dict())
        return newest

    def index(_req: Request) -> Response:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-store"})

    def timeline(req: Request) -> Response:
        t0, t1 = _range(req)
        spans = read_timeline(link.log_path, t0, t1) if link.log_path else []
        clips = [s.clip for s in spans if s.clip]
        return JSONResponse({"now": time.time(), "from": t0, "to": t1, "log": link.log_path is not None,
                             "spans": [s.to_dict() for s in spans], "reviews": reviews_of(clips)})

    def clip(req: Request) -> Response:
        reply = link.ask({"cmd": "clip", "id": req.path_params["clip"]})
        return Response(base64.b64decode(reply["flac"]), media_type="audio/flac",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def review(req: Request) -> Response:
        body = await _json(req)
        who = f"{str(body.get('who') or 'web')[:60]} (web, {req.client.host if req.client else '?'})"
        payload = {"cmd": "review", "id": body.get("clip"), "verdict": body.get("verdict"),
                   "note": str(body.get("note") or ""), "who": who}
        return JSONResponse(await asyncio.to_thread(link.ask, payload))

    async def undo(req: Request) -> Response:
        body = await _json(req)
        who = f"{str(body.get('who') or 'web')[:60]} (web, {req.client.host if req.client else '?'})"
        return JSONResponse(await asyncio.to_thread(link.ask, {"cmd": "undo", "review": body.get("review"), "who": who}))

    def speakers(_req: Request) -> Response:
        listed = link.ask({"cmd": "speakers"})["speakers"]
        now = time.time()
        recent = [s for s in read_timeline(link.log_path, now - 86400, now) if s.kind == "segment"] if link.log_path else []
        for row in listed:
            mine = [s for s in recent if s.speaker == row["name"]]
            row["detections_24h"] = len(mine)
            row["airtime_24h_s"] = round(sum(s.end - s.start for s in mine), 1)
            row["last_seen"] = max((s.t1 for s in mine), default=None)
            row["last_stream"] = max(mine, key=lambda s: s.t1).stream if mine else None
        return JSONResponse({"speakers": listed})

    def status(_req: Request) -> Response:
        return JSONResponse(link.ask({"cmd": "status"}, timeout_s=5.0))

    async def live(req: Request) -> Response:
        queue = feed.listen()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        yield ": still here\n\n"
                        continue
                    if message is None:
                        return
                    yield f"data: {json.dumps(message)}\n\n"
            finally:
                feed.listeners.discard(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
                await task

    async def refused(_req: Request, exc: Exception) -> Response:
        status = 504 if "no core answered" in str(exc) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    routes = [
        Route("/", index),
        Route("/api/timeline", timeline),
        Route("/api/live", live),
        Route("/api/clips/{clip}", clip),
        Route("/api/review", review, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        Route("/api/speakers", speakers),
        Route("/api/status", status),
        Mount("/static", StaticFiles(directory=PAGE), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ControlError: refused, ValueError: refused})
    app.add_middleware(Guard, token=token, loopback=loopback)  # type: ignore[arg-type]
    return app


async def _json(req: Request) -> dict[str, Any]:
    try:
        body = await req.json()
    except ValueError:
        raise ControlError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body
