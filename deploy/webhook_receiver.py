"""The on-call's stand-in: an HTTP endpoint that records what Alertmanager sends it.

``python -m deploy.webhook_receiver --port N --out FILE`` (or ``python webhook_receiver.py``:
it imports nothing outside the standard library, so Compose runs it in a plain Python image).

* ``POST`` any path with a JSON body: the body is appended to ``FILE`` as one line (JSON Lines)
  and flushed before the answer, 200. A body that is not JSON is answered 400 and not recorded,
  so every line of ``FILE`` parses.
* ``GET /``: 200 with ``{"received": <notifications recorded by this process>}`` (the readiness
  probe of ``deploy/services.py`` and a quick look for people).

Alertmanager's webhook body names its receiver (``"receiver": "sla-webhook"``), so one file
shows which route each notification took.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class NotificationLog:
    """Appends one JSON document per line; safe to call from the server's threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.received = 0
        self._lock = threading.Lock()

    def append(self, document: object) -> None:
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            self.received += 1


def handler_for(log: NotificationLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                document = json.loads(body)
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            log.append(document)
            self._answer(200, {"received": log.received})

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/":
                self._answer(404, {"error": "GET / only"})
                return
            self._answer(200, {"received": log.received})

        def _answer(self, status: int, document: dict[str, object]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the JSON Lines file to append to")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(NotificationLog(args.out)))
    print(f"webhook receiver on http://{args.host}:{args.port}, appending to {args.out}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
