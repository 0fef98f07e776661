"""An ASGI app to run under uvicorn and pyinit (no framework, stdlib only).

Routes: `/` answers at once; `/slow?s=N` answers 200 after N seconds (at most 300), the request
a drain must let finish; `/healthz` answers 200 while the process can serve. Each slow request
writes `slow request started s=N` to stderr when it begins, so a test knows it is in flight.
It speaks the lifespan protocol, so uvicorn starts and stops it without a warning.
"""
import asyncio
import os
import sys
import urllib.parse


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, send)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, send):
    path = scope["path"]
    if path == "/":
        await answer(send, 200, f"hello from uvicorn {os.getpid()}\n")
    elif path == "/healthz":
        await answer(send, 200, "ok\n")
    elif path == "/slow":
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            seconds = min(float(query.get("s", ["1"])[0]), 300.0)
        except ValueError:
            await answer(send, 400, "s must be a number of seconds\n")
            return
        print(f"slow request started s={seconds:g}", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)
        await answer(send, 200, f"slept {seconds:g}s\n")
    else:
        await answer(send, 404, "not found\n")


async def answer(send, status, text):
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
