"""The collector's OpenAPI 3.1 document (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from intake.segment import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, TYPES

_ANSWERS: dict[str, Any] = {
    "200": {
        "description": "Stored durably (fsynced); readable by the next dbt run within a second.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}},
    },
    "400": {
        "description": "Bad input: not JSON, over the size limit, or messages the API refuses "
        "(those land in segment/rejects with the reason; the others of a batch are stored).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}},
    },
    "401": {"description": "No write key, or one the collector does not know."},
    "503": {"description": "Nothing of the request was stored (the disk refused): retry."},
}


def _message_schema(kind: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": f"A Segment {kind or 'call'} (segment.com/docs/connections/spec); at most "
        f"{MAX_MESSAGE_BYTES // 1024} KB.",
        "properties": {
            "type": {"enum": list(TYPES)},
            "messageId": {"type": "string", "description": "De-duplicated: sent twice, kept once"},
            "userId": {"type": ["string", "number"]},
            "anonymousId": {"type": ["string", "number"]},
            "event": {"type": "string", "description": "track: required"},
            "name": {"type": "string"},
            "previousId": {"type": "string", "description": "alias: required"},
            "groupId": {"type": "string", "description": "group: required"},
            "timestamp": {"type": "string", "format": "date-time"},
            "sentAt": {
                "type": "string",
                "format": "date-time",
                "description": "The client's clock when sent: timestamp is corrected to "
                "receivedAt - (sentAt - timestamp)",
            },
            "properties": {"type": "object"},
            "traits": {"type": "object"},
            "context": {"type": "object"},
        },
        "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
    }
    return schema


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for kind in TYPES:
        paths[f"/v1/{kind}"] = {
            "post": {
                "summary": f"One {kind} call",
                "security": [{"writeKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _message_schema(kind)}},
                },
                "responses": _ANSWERS,
            }
        }
    batch = {
        "post": {
            "summary": f"Many calls at once (at most {MAX_BATCH_BYTES // 1024} KB; gzip welcome)",
            "security": [{"writeKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["batch"],
                            "properties": {
                                "batch": {"type": "array", "items": _message_schema(None)},
                                "sentAt": {"type": "string", "format": "date-time"},
                                "context": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": _ANSWERS,
        }
    }
    paths["/v1/batch"] = batch
    paths["/v1/import"] = batch
    for path, what in (
        ("/v2/events", "One mParticle Events API batch (202 when stored)"),
        ("/v2/bulkevents", "An array of mParticle batches (202 when stored)"),
    ):
        paths[path] = {
            "post": {
                "summary": what,
                "security": [{"writeKey": []}],
                "requestBody": {"required": True, "content": {"application/json": {}}},
                "responses": {"202": {"description": "Stored durably"}, "400": _ANSWERS["400"],
                              "401": _ANSWERS["401"], "503": _ANSWERS["503"]},
            }
        }  # fmt: skip
    for path, what in (
        ("/webhooks/sendgrid", "SendGrid's signed Event Webhook (ECDSA signature checked)"),
        ("/webhooks/twilio/status", "Twilio status callbacks (?send_key=; X-Twilio-Signature)"),
        ("/webhooks/twilio/inbound", "Twilio incoming messages: STOP, START, HELP"),
    ):
        paths[path] = {
            "post": {
                "summary": what,
                "responses": {
                    "200": {"description": "Stored durably"},
                    "401": {"description": "Not signed by the provider, or too old"},
                    "404": {"description": "This webhook's secret is not configured"},
                },
            }
        }
    privacy: dict[str, Any] = {"security": [{"privacyToken": []}]}
    paths["/v1/privacy/forget"] = {
        "post": {
            **privacy,
            "summary": "A deletion request (GDPR Art. 17, CCPA): the identifier is blocked at "
            "once, the person forgotten everywhere by the next privacy run",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    **{k: {"type": "string"} for k in ("email", "phone", "user_id", "person_id")},
                    "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                    "drop_new_events": {"type": "boolean", "default": False},
                },
                "minProperties": 1,
            }}}},
            "responses": {
                "202": {"description": "Accepted: request_id, status (queued or completed), "
                                       "status_url"},
                "400": {"description": "Not exactly one identifier, or one that is malformed"},
                "409": {"description": "The request id already names another identifier"},
                "401": {"description": "No or a wrong bearer token"},
                "404": {"description": "SWITCHYARD_PRIVACY_TOKEN is not set"},
            },
        }
    }  # fmt: skip
    paths["/v1/privacy/forget/{request_id}"] = {
        "get": {
            **privacy,
            "summary": "A request's status (queued, in_progress, completed) and what each store "
            "gave up, without personal data",
            "responses": {"200": {"description": "The status"},
                          "404": {"description": "No such request"}},
        }
    }  # fmt: skip
    paths["/health"] = {
        "get": {"summary": "Alive, with counts", "responses": {"200": {"description": "ok"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard collector",
            "version": "1",
            "description": "Segment's HTTP Tracking API, landing into Switchyard's landing files.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "privacyToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SWITCHYARD_PRIVACY_TOKEN",
                },
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The write key as the user name, no password (as Segment)",
                },
            },
            "schemas": {
                "Success": {"type": "object", "properties": {"success": {"const": True}}},
                "Refusal": {
                    "type": "object",
                    "properties": {
                        "success": {"const": False},
                        "message": {"type": "string"},
                        "accepted": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "messageId": {"type": ["string", "null"]},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    }
