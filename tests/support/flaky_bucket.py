"""A bucket that fails as real ones do: an HTTP proxy in front of gcp-storage-emulator that answers
503, or stalls without answering, for the first N uploads whose request names a given object.

Point a worker's STORAGE_EMULATOR_HOST at `url`; everything else is forwarded to the emulator.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# hop-by-hop headers, and those the proxy sets itself
SKIPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Fault:
    """Answer `kind` ('503' or 'stall') to the next `times` uploads whose body holds `name`."""

    name: str
    kind: str
    times: int
    stall_s: float = 0.0


class FlakyBucket:
    """The proxy, serving on a thread of its own; `faulted` counts the faults it answered."""

    def __init__(self, emulator: str, faults: list[Fault]) -> None:
        self.faults = faults
        self.faulted: Counter[str] = Counter()
        self.lock = threading.Lock()
        target = urlsplit(emulator)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.take(body) if "/upload/" in self.path else None
                if fault is not None and fault.kind == "stall":
                    time.sleep(fault.stall_s)  # then hang up without a word
                    self.close_connection = True
                    return
                if fault is not None:
                    answer = b'{"error": {"code": 503, "message": "Service Unavailable"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIPPED}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in SKIPPED:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, body: bytes) -> Fault | None:
        """Return the fault this upload meets, counting it off; None to forward it."""
        with self.lock:
            for fault in self.faults:
                if fault.name.encode() in body and self.faulted[fault.name] < fault.times:
                    self.faulted[fault.name] += 1
                    return fault
        return None

    def __enter__(self) -> FlakyBucket:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
