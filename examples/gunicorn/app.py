"""A WSGI app to run under gunicorn and pyinit (stdlib only, no framework).

Routes: `/` answers at once; `/slow?s=N` answers 200 after N seconds (at most 300), the request
a drain must let finish; `/healthz` answers 200 while the process can serve. Each slow request
writes `slow request started s=N` to stderr when it begins, so a test knows it is in flight.
"""
import os
import sys
import time
import urllib.parse


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        return answer(start_response, "200 OK", f"hello from gunicorn worker {os.getpid()}\n")
    if path == "/healthz":
        return answer(start_response, "200 OK", "ok\n")
    if path == "/slow":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            seconds = min(float(query.get("s", ["1"])[0]), 300.0)
        except ValueError:
            return answer(start_response, "400 Bad Request", "s must be a number of seconds\n")
        print(f"slow request started s={seconds:g}", file=sys.stderr, flush=True)
        time.sleep(seconds)
        return answer(start_response, "200 OK", f"slept {seconds:g}s\n")
    return answer(start_response, "404 Not Found", "not found\n")


def answer(start_response, status, text):
    body = text.encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
