"""The collector's OpenAPI 3.1 document, built from the event schema in ``schemas/``.

Served at ``/openapi.json``; a copy is kept in ``docs/openapi.json`` (regenerate it with
``python -m collector.openapi > docs/openapi.json``; a test checks that they match).
"""

from __future__ import annotations

import copy
import functools
import json

from headwater.schemas import load_schema

CALL_REQUIRED = {"track": ["event"], "group": ["groupId"], "alias": ["previousId", "userId"]}
SHORT = {"track": "t", "identify": "i", "page": "p", "screen": "s", "group": "g", "alias": "a"}
ERROR_STATUSES = {
    "400": "Malformed JSON, or no valid event; `errors` names each invalid field",
    "401": "Missing, unknown or expired write key",
    "403": "The project is disabled, or the Origin is not allowed for it",
    "413": "The body (or a single event) is over the size limit",
    "415": "A content type or encoding other than JSON (optionally gzip)",
    "429": "Over the rate limit; retry after `Retry-After` seconds",
    "503": "Kafka did not acknowledge in time; nothing was stored; retry after `Retry-After` seconds",
}


def _rewrite_refs(node):
    if isinstance(node, dict):
        return {k: ("#/components/schemas/" + v.rsplit("/", 1)[1] if k == "$ref" else _rewrite_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _components() -> dict:
    event = copy.deepcopy(load_schema("headwater", "segment_event", "1-0-0").document)
    defs = _rewrite_refs(event.pop("$defs"))
    for key in ("$schema", "$id", "self"):
        event.pop(key)
    event = _rewrite_refs(event)
    schemas = {**defs, "Event": event}
    identity = event["allOf"][0]
    non_null_id = {"$ref": "#/components/schemas/id"}
    for call in SHORT:
        properties = {k: v for k, v in event["properties"].items() if k != "type"}
        properties["writeKey"] = {"type": "string"}
        required = CALL_REQUIRED.get(call, [])
        properties.update({name: non_null_id for name in required if name.endswith("Id")})
        schemas[f"{call.capitalize()}Call"] = {
            "type": "object", "properties": properties, "required": required, "allOf": [identity],
        }
    schemas["Batch"] = {
        "type": "object", "required": ["batch"],
        "description": "Each item is checked on its own: valid items are accepted, invalid ones reported in "
                       "`errors` (see collector/ingest.py). The answer is 400 only when no item is valid.",
        "properties": {"batch": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Event"}},
                       "sentAt": {"$ref": "#/components/schemas/time"}, "context": {"type": "object"},
                       "writeKey": {"type": "string"}},
    }
    schemas["Compact"] = {
        "type": "object", "required": ["e"],
        "description": "Headwater's tracking-script format; see collector/compact.py. As with a batch, valid "
                       "events are accepted and invalid ones reported.",
        "properties": {"k": {"type": "string"}, "s": {"$ref": "#/components/schemas/epoch_ms"},
                       "e": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/CompactEvent"}}},
    }
    compact = copy.deepcopy(load_schema("headwater", "compact_event", "1-0-0").document)
    schemas.update(_rewrite_refs(compact.pop("$defs")))
    for key in ("$schema", "$id", "self"):
        compact.pop(key)
    schemas["CompactEvent"] = _rewrite_refs(compact)
    schemas["Success"] = {
        "type": "object", "required": ["success"],
        "properties": {"success": {"const": True}, "accepted": {"type": "integer"},
                       "rejected": {"type": "integer"},
                       "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}},
    }
    schemas["FieldError"] = {
        "type": "object", "required": ["field", "reason"],
        "properties": {"index": {"type": "integer"}, "field": {"type": "string"}, "reason": {"type": "string"},
                       "detail": {"type": "string"}},
    }
    schemas["Error"] = {
        "type": "object", "required": ["success", "reason", "message"],
        "properties": {"success": {"const": False}, "reason": {"type": "string"}, "code": {"type": "string"},
                       "message": {"type": "string"},
                       "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}},
    }
    return {
        "schemas": schemas,
        "securitySchemes": {"writeKey": {"type": "http", "scheme": "basic",
                                         "description": "the write key as the username, an empty password"}},
    }


def _json_body(schema_name: str) -> dict:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"required": True, "content": {"application/json": {"schema": ref}, "text/plain": {"schema": ref}}}


def _responses() -> dict:
    retry = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
    responses = {"200": {"description": "Every accepted event is durable in Kafka (acks=all)",
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}}}
    for status, text in ERROR_STATUSES.items():
        responses[status] = {"description": text,
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if status in ("429", "503"):
            responses[status]["headers"] = retry
    return responses


def _ingest(summary: str, body: str, operation_id: str) -> dict:
    return {"post": {"summary": summary, "operationId": operation_id, "requestBody": _json_body(body),
                     "responses": _responses(), "security": [{"writeKey": []}, {}]}}


def _status_route(summary: str, operation_id: str, ready: bool = False) -> dict:
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    if ready:
        responses["503"] = {"description": "Kafka unreachable or the project store still loading",
                            "content": {"application/json": {"schema": {"type": "object"}}}}
    return {"get": {"summary": summary, "operationId": operation_id, "responses": responses}}


def _script_route(summary: str, operation_id: str) -> dict:
    script = {"text/javascript": {"schema": {"type": "string"}}}
    return {"get": {"summary": summary, "operationId": operation_id, "responses": {
        "200": {"description": "The script; cached for an hour, with an ETag", "content": script},
        "304": {"description": "Not modified (If-None-Match holds the current ETag)"},
        "404": {"description": "The script has not been built",
                "content": {"application/json": {"schema": {"type": "object"}}}}}}}


def _container_route() -> dict:
    script = {"text/javascript": {"schema": {"type": "string"}}}
    query = [{"name": "v", "in": "query", "required": False, "schema": {"type": "integer"},
              "description": "a version as it was published (immutable)"},
             {"name": "preview", "in": "query", "required": False, "schema": {"type": "string"},
              "description": "a preview token: the draft, never cached (docs/tags.md)"}]
    path = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("project", "container")]
    return {"get": {"summary": "A tag manager container, compiled into one script", "operationId": "container",
                    "parameters": [*path, *query], "responses": {
                        "200": {"description": "The script, cached for tags_max_age_s, with an ETag",
                                "content": script},
                        "304": {"description": "Not modified (If-None-Match holds the current ETag)"},
                        "404": {"description": "No such container, version, or nothing published yet",
                                "content": {"application/json": {"schema": {"type": "object"}}}}}}}


@functools.cache
def openapi_document() -> dict:
    paths = {}
    for call, short in SHORT.items():
        body = f"{call.capitalize()}Call"
        paths[f"/v1/{call}"] = _ingest(f"Segment {call} call", body, call)
        paths[f"/v1/{short}"] = _ingest(f"Segment {call} call (short path)", body, f"{call}_short")
    paths["/v1/batch"] = _ingest("A batch of Segment events", "Batch", "batch")
    paths["/v1/b"] = _ingest("A batch of Segment events (short path)", "Batch", "batch_short")
    paths["/v1/hw"] = _ingest("Events from Headwater's tracking script", "Compact", "compact")
    paths["/hw.js"] = _script_route("Headwater's tracking script", "tracker")
    paths["/hw-outbound.js"] = _script_route("The tracking script's outbound-links extra", "tracker_outbound")
    paths["/tm/{project}/{container}.js"] = _container_route()
    paths["/healthz"] = _status_route("The process is alive", "healthz")
    paths["/readyz"] = _status_route("Kafka is reachable and the project store is loaded", "readyz", ready=True)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headwater collector", "version": "1.0.0",
                 "description": "Segment-compatible HTTP tracking API. A 200 means Kafka acknowledged every "
                                "accepted event with acks=all."},
        "paths": paths,
        "components": _components(),
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))
