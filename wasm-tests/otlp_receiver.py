#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for tests: decodes every export with the
official OpenTelemetry protobuf schema (opentelemetry-proto) and rejects
anything malformed with 400, recording why.

  POST /v1/traces             application/x-protobuf ExportTraceServiceRequest
  GET  /__otlp/spans          decoded spans as JSON; DELETE clears
  GET  /__otlp/errors         rejected payloads (reasons)
  POST /__otlp/mode           {"mode": "ok" | "500" | "hang"}
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

STATE = {"spans": [], "errors": [], "mode": "ok", "exports": 0}
LOCK = threading.Lock()


def any_value(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind is None:
        raise ValueError("attribute without a value")
    return getattr(v, kind)


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        if not kv.key:
            raise ValueError("attribute with an empty key")
        out[kv.key] = any_value(kv.value)
    return out


def decode(payload: bytes) -> list[dict]:
    request = ExportTraceServiceRequest.FromString(payload)
    spans = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise ValueError("trace_id must be 16 bytes and span_id 8")
                if span.parent_span_id and len(span.parent_span_id) != 8:
                    raise ValueError("parent_span_id must be 8 bytes")
                if not span.name or span.end_time_unix_nano < span.start_time_unix_nano:
                    raise ValueError("span without a name or ending before it starts")
                spans.append({
                    "name": span.name, "kind": span.kind, "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                    "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes), "status_code": span.status.code,
                    "resource": resource, "scope": ss.scope.name,
                })
    if not spans:
        raise ValueError("export without spans")
    return spans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self):
        payload = self.body()
        if self.path == "/__otlp/mode":
            STATE["mode"] = json.loads(payload)["mode"]
            return self.reply(200, b"{}")
        if self.path != "/v1/traces":
            return self.reply(404)
        mode = STATE["mode"]
        if mode == "hang":
            time.sleep(30)
            return self.reply(504)
        if mode == "500":
            return self.reply(500, b'{"error":"configured to fail"}')
        try:
            if self.headers.get("content-type") != "application/x-protobuf":
                raise ValueError(f"content-type {self.headers.get('content-type')}")
            spans = decode(payload)
        except (DecodeError, ValueError) as e:
            with LOCK:
                STATE["errors"].append(str(e))
            return self.reply(400, json.dumps({"error": str(e)}).encode())
        with LOCK:
            STATE["spans"].extend(spans)
            STATE["exports"] += 1
        # An empty ExportTraceServiceResponse.
        self.reply(200, b"", "application/x-protobuf")

    def do_GET(self):
        with LOCK:
            if self.path == "/__otlp/spans":
                return self.reply(200, json.dumps(STATE["spans"]).encode())
            if self.path == "/__otlp/errors":
                return self.reply(200, json.dumps(STATE["errors"]).encode())
            if self.path == "/__otlp/health":
                return self.reply(200, json.dumps({"exports": STATE["exports"]}).encode())
        self.reply(404)

    def do_DELETE(self):
        with LOCK:
            STATE["spans"].clear()
            STATE["errors"].clear()
        self.reply(200, b"{}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"otlp receiver listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
