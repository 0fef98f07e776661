"""The bundled example app: a stdlib-only HTTP server to run under pyinit.

Routes: `/` answers at once; `/slow?s=N` answers after N seconds (an in-flight request to drain);
`/healthz` answers 200. On SIGTERM (or SIGINT) it stops accepting connections, finishes the
requests in flight, and exits 0. Listens on $HOST:$PORT (default 127.0.0.1:8000). Each request
is logged on stderr, except health checks: `/healthz`, and whatever a probe asks (its User-Agent
starts with `kube-probe/`, as the kubelet's and pyinit's do), which come every few seconds.
"""
import http.server
import os
import signal
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "example-app"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/", "/healthz"):
            self.answer(200, "ok\n" if url.path == "/healthz" else "hello from the example app\n")
        elif url.path == "/slow":
            query = urllib.parse.parse_qs(url.query)
            try:
                seconds = min(float(query.get("s", ["1"])[0]), 300.0)
            except ValueError:
                self.answer(400, "s must be a number of seconds\n")
                return
            time.sleep(seconds)
            self.answer(200, f"slept {seconds:g}s\n")
        else:
            self.answer(404, "not found\n")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        if not self.is_health_check():
            super().log_request(code, size)

    def is_health_check(self):
        # A request whose line or headers could not be parsed has no path or headers: log it.
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path
        headers = getattr(self, "headers", None)
        user_agent = headers.get("User-Agent", "") if headers else ""
        return path == "/healthz" or user_agent.startswith("kube-probe/")

    def log_message(self, format, *args):
        sys.stderr.write("app: %s\n" % (format % args))


def main():
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    # socketserver's default listen backlog of 5 drops connections under a burst; gunicorn and
    # uvicorn use 2048.
    http.server.ThreadingHTTPServer.request_queue_size = 128
    server = http.server.ThreadingHTTPServer((host, port), Handler)
    # Request threads are joined on close: in-flight requests finish before the exit.
    server.daemon_threads = False
    server.block_on_close = True

    def on_stop(number, _frame):
        name = signal.Signals(number).name
        print(f"app: {name} received, finishing in-flight requests", file=sys.stderr, flush=True)
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_stop)
    # Ctrl-C in a terminal reaches the app directly (it owns the terminal's foreground): drain
    # on it too, as a server run by hand is expected to.
    signal.signal(signal.SIGINT, on_stop)
    print(f"ready port={port} pid={os.getpid()}", flush=True)
    server.serve_forever()
    server.server_close()
    print("app: drained, exiting 0", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
