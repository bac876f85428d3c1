"""The OTLP exporter posts the spans soar made, with the ids it chose, to a collector on
loopback (a real HTTP server that reads the protobuf request)."""

from __future__ import annotations

import http.server
import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from soar.telemetry.tracing import RUN_ID, configure_tracing, new_trace


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_otlp_exporter_posts_the_ids_soar_chose_to_the_endpoint() -> None:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
        tracer = configure_tracing("otlp", otlp_endpoint=endpoint, service_name="soar-otlp")
        ref = new_trace()
        with tracer.root_span("soar.engine.run", ref, attributes={RUN_ID: "r-9"}):
            pass
        tracer.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    ((path, content_type, body),) = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "soar-otlp"
    (span,) = resource.scope_spans[0].spans
    assert span.name == "soar.engine.run"
    assert (span.trace_id.hex(), span.span_id.hex()) == (ref.trace_id, ref.span_id)
