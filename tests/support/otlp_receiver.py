"""An OTLP/HTTP trace receiver on a free loopback port, standing in for Tempo or Jaeger in tests.

Speaks the wire format the SDK's exporter sends: `POST /v1/traces` with an
`ExportTraceServiceRequest` protobuf body (gzip or deflate when `Content-Encoding` says so),
answered with an empty `ExportTraceServiceResponse`. Every span is kept, decoded with the
official `opentelemetry-proto` messages; `wait_for` blocks until enough have arrived.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.background_http import BackgroundHTTPServer

PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    kind: str  # SPAN_KIND_SERVER, SPAN_KIND_INTERNAL, ...
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str  # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR
    status_message: str
    resource: dict[str, Any]
    scope: str


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def _id(raw: bytes) -> int | None:
    return int.from_bytes(raw, "big") if raw else None


def decode(body: bytes) -> list[ReceivedSpan]:
    """Every span of one `ExportTraceServiceRequest`."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    ReceivedSpan(
                        trace_id=_id(span.trace_id) or 0,
                        span_id=_id(span.span_id) or 0,
                        parent_span_id=_id(span.parent_span_id),
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        status=Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        resource=resource,
                        scope=ss.scope.name,
                    )
                )
    return out


class OtlpReceiver(BackgroundHTTPServer):
    """`url` is the base for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                if self.path != PATH:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    spans = decode(raw)
                except Exception:  # a malformed body: tell the client, as a collector would
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._record(spans)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}"

    def _record(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self.requests += 1
            self.spans.extend(spans)
            self._changed.notify_all()

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float
    ) -> list[ReceivedSpan]:
        """The spans received once `done(spans)` holds, or all received when `timeout` s pass."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self.spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return list(self.spans)
