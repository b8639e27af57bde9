"""The inbox endpoint an app calls for its signed-in user (Starlette, served by uvicorn):

    GET  /v1/inbox[?unread=true]     the user's messages, newest first, and how many are unread
    POST /v1/inbox/{id}/read         marks one read (an `open` feedback event)
    POST /v1/inbox/{id}/click        marks one clicked (a `click` event; clicked counts as read)
    GET  /health

Every /v1 call carries `Authorization: Bearer <token>` (activations/inbox/tokens.py); the token's
user is the only one whose messages it sees. A message of someone else's is "not found", as one
that does not exist. Reads and clicks are fsynced to the landing files before the answer.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activations.inbox import store, tokens
from switchyard.clock import utc_now

SECRET_VARIABLE = "SWITCHYARD_INBOX_SECRET"
ORIGINS_VARIABLE = "SWITCHYARD_INBOX_ALLOWED_ORIGINS"  # comma-separated, for apps in a browser


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _as_json(m: store.InboxMessage) -> dict[str, Any]:
    return {
        "id": m.send_key,
        "title": m.title,
        "body": m.body,
        "journey": m.journey,
        "step": m.step,
        "created_at": _iso(m.created_at),
        "read_at": _iso(m.read_at),
        "clicked_at": _iso(m.clicked_at),
    }


def _unauthorized(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "unauthorized", "detail": reason},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def create_app(
    landing_dir: Path,
    secret: str,
    clock: Callable[[], datetime] = utc_now,
    allowed_origins: Sequence[str] = (),
) -> Starlette:
    tokens.check_secret(secret)  # a short secret stops the service at start, not at a request
    events: list[store.InboxWriter] = []  # opened by the first read or click
    opening = threading.Lock()

    def user_of(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise tokens.TokenError("send Authorization: Bearer <token>")
        now = clock()  # naive UTC, as Switchyard's clock: not the machine's local time
        return tokens.verify(
            secret, token.strip(), now.replace(tzinfo=now.tzinfo or UTC).timestamp()
        )

    def listing(request: Request) -> Response:
        try:
            user = user_of(request)
        except tokens.TokenError as bad:
            return _unauthorized(str(bad))
        unread_only = request.query_params.get("unread", "").lower() in ("1", "true", "yes")
        messages = store.read_inbox(landing_dir, user)
        unread = sum(1 for m in messages if m.read_at is None)
        shown = [m for m in messages if m.read_at is None] if unread_only else messages
        return JSONResponse({"messages": [_as_json(m) for m in shown], "unread": unread})

    def engage(event: store.Engagement) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                user = user_of(request)
            except tokens.TokenError as bad:
                return _unauthorized(str(bad))
            send_key = request.path_params["message_id"]
            mine = {m.send_key: m for m in store.read_inbox(landing_dir, user)}
            message = mine.get(send_key)
            if message is None:
                return JSONResponse({"error": "not_found", "detail": send_key}, status_code=404)
            done = message.read_at if event == "open" else message.clicked_at
            if done is None:  # a second tap records nothing new
                with opening:
                    if not events:
                        events.append(
                            store.InboxWriter(
                                landing_dir, "feedback", "events", store.EVENTS_PREFIX
                            )
                        )
                now = clock()
                events[0].append(store.event_row(send_key, event, now))
                # as the landed event makes it (a click counts as a read): no second read
                message = replace(
                    message,
                    read_at=message.read_at or now,
                    clicked_at=now if event == "click" else message.clicked_at,
                )
            return JSONResponse(_as_json(message))

        return endpoint

    def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for writer in events:
            writer.close()

    middleware = []
    if allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization"],
            )
        )
    return Starlette(
        routes=[
            Route("/v1/inbox", listing, methods=["GET"]),
            Route("/v1/inbox/{message_id}/read", engage("open"), methods=["POST"]),
            Route("/v1/inbox/{message_id}/click", engage("click"), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
