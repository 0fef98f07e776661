"""An app that starts answering late, for bench/readiness.py, in two forms:

- `late_app.py PORT DELAY`: a stdlib server that sleeps DELAY seconds (its port refuses
  meanwhile), then listens on 127.0.0.1:PORT, prints `listening T` right after listen(2), and
  answers every GET with 200 until SIGTERM.
- `gunicorn late_app:app` with LATE_APP_DELAY=DELAY: a WSGI app whose import takes DELAY
  seconds, as a large Django app's does. gunicorn binds its port before the worker imports the
  app, so connections wait in the listen backlog meanwhile; the import prints `listening T` as
  it ends, and the worker accepts right after.

T is the monotonic clock (CLOCK_MONOTONIC, the same for every process of the machine).
"""
import sys
import time


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return [b"ok\n"]


def serve(port, delay):
    import http.server
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    time.sleep(delay)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening {time.monotonic():.6f}", flush=True)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]))
else:
    import os

    time.sleep(float(os.environ.get("LATE_APP_DELAY", "0")))
    print(f"listening {time.monotonic():.6f}", flush=True)
