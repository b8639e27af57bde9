"""`switchyard collect`: an HTTP service that speaks Segment's HTTP Tracking API, so existing
Segment clients and SDKs send to Switchyard unchanged, and lands every call in `segment/events`.

An answer of 200 means durable: the call's rows were fsynced (group commit with the other
requests in flight) before it was sent, and are in a closed landing file within
`rotate_seconds`. Input the API would refuse gets a 4xx that says why, and the refused messages
land in `segment/rejects` with the reason (dbt's fct_rejected_rows shows them); bad input never
gets a 5xx. A 503 means nothing of the request was stored: retry it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import urllib.parse
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from intake import feedback, mparticle, preference_center, segment
from intake.consent_index import ConsentIndex
from intake.durable import GroupCommitLog, recover
from intake.openapi import openapi_document
from switchyard import landing, preference_links
from switchyard.privacy import requests as privacy_requests
from switchyard.privacy.landed import event_keys
from switchyard.privacy.subject import SubjectError
from switchyard.privacy.tombstones import Forgotten
from switchyard.signed_tokens import check_secret

PRIVACY_TOKEN_VARIABLE = "SWITCHYARD_PRIVACY_TOKEN"
SINGLE_CALLS = ("track", "identify", "page", "screen", "alias", "group")
RECENT_IDS = 1_000_000  # messageIds remembered for de-duplication (staging de-duplicates too)
PREVIEW_BYTES = 2048  # of a refused request's body, kept with its reason
MAX_WEBHOOK_BYTES = 4 * 1024 * 1024  # a provider's webhook request, read before its signature


@dataclass(frozen=True)
class CollectorSettings:
    landing_dir: Path
    write_keys: Mapping[str, str]  # write key -> source name
    rotate_seconds: float = 0.5
    # provider feedback webhooks: each is served only when its secret is set
    sendgrid_public_key: str | None = None  # base64 DER, from SendGrid's Mail Settings
    twilio_auth_token: str | None = None
    public_url: str | None = None  # the collector's URL as Twilio calls it (signatures)
    # the signed links in messages (unsubscribe, preference center): served when set
    link_secret: str | None = None
    preference_topics: tuple[preference_center.Topic, ...] = ()  # the journeys' topics
    # deletion requests (POST /v1/privacy/forget): served when set, as a bearer token
    privacy_token: str | None = None

    @staticmethod
    def parse_write_keys(text: str) -> dict[str, str]:
        """`source:key,source:key` (SWITCHYARD_WRITE_KEYS) as write key -> source."""
        keys: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            source, sep, key = part.partition(":")
            if not sep or not source.strip() or not key.strip():
                raise ValueError(
                    f"SWITCHYARD_WRITE_KEYS entry {part!r} is not source:write_key "
                    "(e.g. web:wk_live_123,ios:wk_live_456)"
                )
            keys[key.strip()] = source.strip()
        if not keys:
            raise ValueError(
                "no write keys: set SWITCHYARD_WRITE_KEYS to source:write_key pairs, comma-"
                "separated (a Segment client sends its write key as the Basic auth user)"
            )
        return keys


class BadRequest(Exception):
    def __init__(self, status: int, message: str, preview: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.preview = preview  # the body's first bytes, kept with the reject


class RecentIds:
    """The last `capacity` messageIds landed, and those being written now: a client's retry of
    a call it got no answer to is acknowledged without landing it twice, and a retry that comes
    while the first copy is still being written waits for that write's outcome."""

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.writing: dict[str, asyncio.Future[bool]] = {}  # id -> True once durable

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def create_app(settings: CollectorSettings) -> Starlette:
    if settings.sendgrid_public_key:
        feedback.sendgrid_key(settings.sendgrid_public_key)  # a bad key stops the start
    if settings.link_secret:
        preference_links.check_secret(settings.link_secret)  # so does a short secret
    if settings.privacy_token:
        check_secret(settings.privacy_token, PRIVACY_TOKEN_VARIABLE)  # and a short token
    folders = {
        "events": landing.table_dir(settings.landing_dir, "segment", "events"),
        "rejects": landing.table_dir(settings.landing_dir, "segment", "rejects"),
        "feedback": landing.table_dir(settings.landing_dir, "feedback", "events"),
        "suppressions": landing.table_dir(settings.landing_dir, "preferences", "suppressions"),
        "consents": landing.table_dir(settings.landing_dir, "preferences", "consents"),
    }
    state: dict[str, Any] = {
        "recent": RecentIds(), "accepted": 0, "rejected": 0, "duplicates": 0, "forgotten": 0,
    }  # fmt: skip
    # People whose deletion request asks that their new events be dropped (switchyard forget)
    forgotten = Forgotten(settings.landing_dir, intake_only=True)
    logs: dict[str, GroupCommitLog] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name, folder in folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            recover(folder)  # what a crashed collector acknowledged, closed into place
            logs[name] = GroupCommitLog(folder, "collect", settings.rotate_seconds)
            logs[name].start()
        state["events"], state["rejects"] = logs["events"], logs["rejects"]
        try:
            yield
        finally:
            for log in logs.values():
                await log.close()

    async def single(request: Request) -> JSONResponse:
        call = request.url.path.rsplit("/", 1)[-1]
        return await _handle(request, call)

    async def batch(request: Request) -> JSONResponse:
        return await _handle(request, None)

    async def _handle(request: Request, call: str | None) -> JSONResponse:
        received_at = datetime.now(UTC)
        source = None
        try:
            source = _header_source(request, settings.write_keys)
            body = await _read_json(request, segment.MAX_BATCH_BYTES if call is None else None)
            source = source or _body_source(body, settings.write_keys)
            if call is None:
                messages, sent_at, shared = _batch_messages(body)
            else:
                messages, sent_at, shared = [body], None, {}
        except BadRequest as bad:
            if source is not None and bad.status == 400:  # a known source's refused request
                await _keep_refused(source, received_at, bad)
            return _error(bad.status, bad.message)
        return await _land(messages, call, source, received_at, sent_at, shared)

    async def _keep_refused(source: str, received_at: datetime, bad: BadRequest) -> None:
        preview = bad.preview.decode("utf-8", "replace")
        row = segment.reject_row(received_at, source, bad.message, None, preview)
        with contextlib.suppress(OSError, RuntimeError):  # the answer says why all the same
            await state["rejects"].append([row])

    async def _land(
        messages: list[Any],
        call: str | None,
        source: str,
        received_at: datetime,
        sent_at: Any,
        shared: dict[str, Any],
    ) -> JSONResponse:
        recent: RecentIds = state["recent"]
        rows: list[dict[str, Any]] = []
        rejected: list[tuple[int, Any, str]] = []
        mine: dict[str, asyncio.Future[bool]] = {}  # ids this request writes first
        behind: list[tuple[asyncio.Future[bool], dict[str, Any]]] = []  # retries of ids in writing
        blocking = forgotten.any()  # once a request: no event's keys are built when none is
        for index, message in enumerate(messages):
            if isinstance(message, dict) and shared:
                message = {**shared, **message}  # a batch's context applies to each message
            try:
                landed = segment.check(message, received_at, source, call, sent_at)
            except segment.Rejected as refused:
                if blocking and isinstance(message, dict) and forgotten.names(event_keys(message)):
                    state["forgotten"] += 1  # not kept as a reject either
                    continue
                rejected.append((index, message, str(refused)))
                continue
            except Exception as exc:  # bad input never gets a 5xx: kept, with what went wrong
                rejected.append((index, message, f"unreadable message: {exc!r}"))
                continue
            if blocking and forgotten.names(event_keys(landed.row)):
                state["forgotten"] += 1  # acknowledged, never landed: not even as a reject
                continue
            if landed.message_id in recent or landed.message_id in mine:
                state["duplicates"] += 1
                continue  # landed already (or earlier in this request): not landed twice
            if (first := recent.writing.get(landed.message_id)) is not None:
                behind.append((first, landed.row))
                continue
            mine[landed.message_id] = asyncio.get_running_loop().create_future()
            recent.writing[landed.message_id] = mine[landed.message_id]
            rows.append(landed.row)
        stored = False
        try:
            if rows:
                await state["events"].append(rows)
            stored = True
        except (OSError, RuntimeError) as failed:
            return _error(503, f"not stored: {failed}; send the request again")
        finally:
            for message_id, written in mine.items():
                recent.writing.pop(message_id, None)
                if stored:
                    recent.add(message_id)
                written.set_result(stored)
        # A retry that came while its first copy was being written: stored if that write failed.
        again = [row for first, row in behind if not await first]
        state["duplicates"] += len(behind) - len(again)
        reject_rows = [
            segment.reject_row(
                received_at,
                source,
                reason,
                message.get("messageId") if isinstance(message, dict) else None,
                json.dumps(message, default=str),
            )  # fmt: skip
            for _, message, reason in rejected
        ]
        try:
            if again:
                await state["events"].append(again)
                for row in again:
                    recent.add(row["messageId"])
            if reject_rows:
                await state["rejects"].append(reject_rows)
        except (OSError, RuntimeError) as failed:
            # what was stored stays stored (and is not stored again on a retry)
            return _error(503, f"not all stored: {failed}; send the request again")
        rows += again
        state["accepted"] += len(rows)
        state["rejected"] += len(rejected)
        if not rejected:
            return JSONResponse({"success": True})
        return JSONResponse(
            {
                "success": False,
                "message": f"{len(rejected)} of {len(messages)} messages rejected; the others "
                "were accepted",
                "accepted": len(messages) - len(rejected),
                "rejected": [
                    {
                        "index": index,
                        "messageId": m.get("messageId") if isinstance(m, dict) else None,
                        "reason": reason,
                    }
                    for index, m, reason in rejected
                ],
            },
            status_code=400,
        )

    async def mparticle_batches(request: Request) -> JSONResponse:
        """mParticle's Events API: 202 when stored, 400 with its `errors` list otherwise."""
        received_at = datetime.now(UTC)
        source = None
        try:
            source = _header_source(request, settings.write_keys)
            if source is None:
                raise BadRequest(401, "no API key: send it as the Basic auth user name")
            body = await _read_json(request, segment.MAX_BATCH_BYTES)
            bulk = request.url.path.endswith("/bulkevents")
            if bulk and not isinstance(body, list):
                raise BadRequest(400, "bulkevents takes a JSON array of batches")
            messages = [
                m for batch in (body if bulk else [body]) for m in mparticle.to_segment(batch)
            ]
        except ValueError as bad:  # not mParticle's shape
            if source is not None:
                await _keep_refused(source, received_at, BadRequest(400, str(bad)))
            return _mparticle_error(400, str(bad))
        except BadRequest as bad:
            if source is not None and bad.status == 400:
                await _keep_refused(source, received_at, bad)
            return _mparticle_error(bad.status, bad.message)
        answer = await _land(messages, None, source, received_at, None, {})
        if answer.status_code != 200:
            refused = json.loads(bytes(answer.body))
            errors = [
                {"code": "BAD_REQUEST", "message": r["reason"]} for r in refused.get("rejected", [])
            ]
            return JSONResponse(
                {"errors": errors or [{"code": "BAD_REQUEST", "message": refused["message"]}],
                 "accepted": refused.get("accepted", 0)},
                status_code=answer.status_code,
            )  # fmt: skip
        return JSONResponse({}, status_code=202)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "accepted": state["accepted"],
                "rejected": state["rejected"],
                "duplicates": state["duplicates"],
                "dropped_forgotten": state["forgotten"],
            }
        )

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    async def sendgrid_webhook(request: Request) -> Response:
        if not settings.sendgrid_public_key:
            return _error(404, "not configured: set SWITCHYARD_SENDGRID_WEBHOOK_PUBLIC_KEY")
        try:
            raw = await _read_bounded(request, MAX_WEBHOOK_BYTES)
            feedback.verify_sendgrid(settings.sendgrid_public_key, raw, request.headers)
            landed = feedback.sendgrid_events(segment.loads(raw))
        except BadRequest as bad:
            return _error(bad.status, bad.message)
        except feedback.Unverified as refused:
            return _error(401, str(refused))
        except ValueError as bad:  # not JSON, not SendGrid's shape
            return _error(400, str(bad))
        return await _land_feedback(landed, JSONResponse({"landed": len(landed.events)}))

    async def twilio_webhook(request: Request) -> Response:
        if not settings.twilio_auth_token:
            return _error(404, "not configured: set SWITCHYARD_TWILIO_AUTH_TOKEN")
        try:
            raw = await _read_bounded(request, MAX_WEBHOOK_BYTES)
        except BadRequest as bad:
            return _error(bad.status, bad.message)
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), True)
        params = dict(pairs)
        url = str(request.url)
        if settings.public_url:
            query = f"?{request.url.query}" if request.url.query else ""
            url = settings.public_url.rstrip("/") + request.url.path + query
        try:
            feedback.verify_twilio(settings.twilio_auth_token, url, pairs, request.headers)
            now = datetime.now(UTC)
            if request.url.path.endswith("/status"):
                landed = feedback.twilio_status(params, request.query_params.get("send_key"), now)
            else:
                landed = feedback.twilio_inbound(params, now)
        except feedback.Unverified as refused:
            return _error(401, str(refused))
        except ValueError as bad:
            return _error(400, str(bad))
        reply = f"<Message>{escape(landed.reply)}</Message>" if landed.reply else ""
        twiml = f'<?xml version="1.0" encoding="UTF-8"?><Response>{reply}</Response>'
        return await _land_feedback(landed, Response(twiml, media_type="text/xml"))

    def _privacy_refusal(request: Request) -> JSONResponse | None:
        if not settings.privacy_token:
            return _error(404, f"not configured: set {PRIVACY_TOKEN_VARIABLE}")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.privacy_token.encode()
        ):
            answer = _error(401, f"send Authorization: Bearer <{PRIVACY_TOKEN_VARIABLE}>")
            answer.headers["WWW-Authenticate"] = "Bearer"
            return answer
        return None

    async def forget_request(request: Request) -> JSONResponse:
        """A deletion request: the identifier blocked now, the full forget queued for the
        next privacy run (switchyard/privacy/requests.py)."""
        refused = _privacy_refusal(request)
        if refused is not None:
            return refused
        try:
            body = await _read_json(request, None)
            asked, request_id, drop = privacy_requests.parse(body)
            status = await run_in_threadpool(
                privacy_requests.accept, settings.landing_dir, asked, request_id, drop
            )
        except BadRequest as bad:
            return _error(bad.status, bad.message)
        except privacy_requests.Conflict as taken:
            return _error(409, str(taken))
        except SubjectError as bad:
            return _error(400, str(bad))
        except (OSError, RuntimeError) as failed:
            return _error(503, f"not stored: {failed}")
        return JSONResponse(
            {"request_id": request_id, "status": status,
             "status_url": f"/v1/privacy/forget/{request_id}"},
            status_code=202,
        )  # fmt: skip

    async def forget_status(request: Request) -> JSONResponse:
        refused = _privacy_refusal(request)
        if refused is not None:
            return refused
        found = privacy_requests.status(settings.landing_dir, request.path_params["request_id"])
        if found is None:
            return _error(404, "no such request")
        return JSONResponse(found)

    async def _land_feedback(landed: feedback.Feedback, answer: Response) -> Response:
        """Durable before the provider hears 2xx: otherwise it sends the request again."""
        try:
            if landed.events:
                await logs["feedback"].append(landed.events)
            if landed.suppressions:
                await logs["suppressions"].append(landed.suppressions)
        except (OSError, RuntimeError) as failed:
            return _error(503, f"not stored: {failed}")
        return answer

    routes = [Route(f"/v1/{call}", single, methods=["POST"]) for call in SINGLE_CALLS]
    routes += [
        Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_webhook, methods=["POST"]),
        Route("/webhooks/twilio/inbound", twilio_webhook, methods=["POST"]),
    ]
    routes += [
        Route("/v1/batch", batch, methods=["POST"]),
        Route("/v2/events", mparticle_batches, methods=["POST"]),
        Route("/v2/bulkevents", mparticle_batches, methods=["POST"]),
        Route("/v1/import", batch, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/privacy/forget", forget_request, methods=["POST"]),
        Route("/v1/privacy/forget/{request_id}", forget_status, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if settings.link_secret:
        routes += preference_center.routes(
            settings.link_secret,
            settings.preference_topics,
            ConsentIndex(folders["consents"]),
            lambda table, rows: logs[table].append(rows),
        )
    else:
        routes += [
            Route(f"/{page}/{{token}}", _links_not_configured, methods=["GET", "POST"])
            for page in ("preferences", "unsubscribe")
        ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _links_not_configured(request: Request) -> JSONResponse:
    return _error(404, f"not configured: set {preference_links.SECRET_VARIABLE}")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status)


def _mparticle_error(status: int, message: str) -> JSONResponse:
    code = "BAD_REQUEST" if status == 400 else "UNAUTHORIZED"
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status)


async def _read_bounded(request: Request, limit: int) -> bytes:
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise BadRequest(413, f"the body is over {limit // 1024} KB")
    return bytes(raw)


async def _read_json(request: Request, batch_limit: int | None) -> Any:
    """The body as JSON: gunzipped if so encoded, refused past Segment's size limits."""
    limit = batch_limit or segment.MAX_MESSAGE_BYTES
    what = "batch" if batch_limit else "call"
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit and not gzipped or len(raw) > 8 * limit:  # gzipped: not that large
            too_big = f"the {what} is over {limit // 1024} KB, Segment's limit"
            raise BadRequest(400, too_big, bytes(raw[:PREVIEW_BYTES]))
    data = bytes(raw)
    if gzipped:
        try:
            inflate = zlib.decompressobj(wbits=31)
            data = inflate.decompress(data, limit + 1)
        except zlib.error as exc:
            not_gzip = f"Content-Encoding is gzip but the body is not: {exc}"
            raise BadRequest(400, not_gzip, data[:PREVIEW_BYTES]) from None
    if len(data) > limit:
        too_big = f"the {what} is over {limit // 1024} KB, Segment's limit"
        raise BadRequest(400, too_big, data[:PREVIEW_BYTES])
    try:
        return segment.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"the body is not valid JSON: {exc}", data[:PREVIEW_BYTES]) from None


def _header_source(request: Request, write_keys: Mapping[str, str]) -> str | None:
    """The source whose write key is the Basic auth user name; None without Authorization."""
    auth = request.headers.get("authorization", "")
    scheme, _, encoded = auth.partition(" ")
    if scheme.lower() != "basic":
        return None  # none, or OAuth's Bearer: the write key is then in the body (`writeKey`)
    try:
        key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, ValueError):  # not base64, not ASCII, not UTF-8
        raise BadRequest(401, "Authorization is not valid Basic credentials") from None
    return _known(key, write_keys)


def _body_source(body: Any, write_keys: Mapping[str, str]) -> str:
    """The source of a `writeKey` in the body (Segment takes it there too)."""
    key = body.get("writeKey") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key:
        raise BadRequest(401, "no write key: send it as the Basic auth user name")
    return _known(key, write_keys)


def _known(key: str, write_keys: Mapping[str, str]) -> str:
    source = write_keys.get(key)
    if source is None:
        raise BadRequest(401, "unknown write key")
    return source


def _batch_messages(body: Any) -> tuple[list[Any], Any, dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        not_batch = 'a batch is a JSON object with a "batch" array of messages'
        raise BadRequest(400, not_batch, json.dumps(body)[:PREVIEW_BYTES].encode())
    shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
    return body["batch"], body.get("sentAt"), shared
