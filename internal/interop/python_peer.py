#!/usr/bin/python3
"""Real WebSocket peer (Debian python3-websockets 10.x) for duplex interop tests.

  /usr/bin/python3 python_peer.py server --port 0 [--host 127.0.0.1] [--deflate]
      [--no-context-takeover] [--tls-cert F --tls-key K] [--log-headers]
      [--subprotocol P] [--ignore-stdin] [--timeout S]
  /usr/bin/python3 python_peer.py client --url ws://127.0.0.1:N/path [--deflate]
      [--no-context-takeover] [--insecure] [--subprotocol P] [--timeout S]
      [--server-close] [--max-size N]

Writes one JSON object per line on stdout; see README.md.
"""

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import threading
import time

import websockets
import websockets.server
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Opcode

MAX_SIZE = 64 * 1024 * 1024
LABEL = "python"

_emit_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with _emit_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def err_str(e):
    s = str(e)
    return f"{type(e).__name__}: {s}" if s else type(e).__name__


def hard_timeout(seconds, on_fire):
    t = threading.Timer(seconds, on_fire)
    t.daemon = True
    t.start()


def deflate_kwargs(args, server):
    """compression/extensions keyword arguments for serve()/connect()."""
    if not args.deflate:
        return {"compression": None}
    if not args.no_context_takeover:
        return {"compression": "deflate"}  # library defaults
    if server:
        f = ServerPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            compress_settings={"memLevel": 5},
        )
    else:
        f = ClientPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            compress_settings={"memLevel": 5},
        )
    return {"compression": None, "extensions": [f]}


# ------------------------------------------------------------------ server


class PingReportingProtocol(websockets.server.WebSocketServerProtocol):
    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        if frame.opcode == Opcode.PING:
            emit({"event": "ping", "size": len(frame.data)})
        return frame


async def run_server(args):
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def shutdown(why):
        if not done.done():
            done.set_result(why)

    async def handler(ws, path=None):
        ev = {
            "event": "connection",
            "path": ws.path,
            "protocol": ws.subprotocol or "",
            "extensions": ws.response_headers.get("Sec-WebSocket-Extensions", ""),
        }
        if args.log_headers:
            hs = {}
            for k, v in ws.request_headers.raw_items():
                k = k.lower()
                hs[k] = v if k not in hs else hs[k] + ", " + v
            ev["headers"] = hs
        emit(ev)
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    parts = msg.split(":", 2)
                    if len(parts) == 3 and parts[1].isdigit():
                        await ws.close(int(parts[1]), parts[2])
                        break
                await ws.send(msg)
        except ConnectionClosed:
            pass
        except Exception as e:  # e.g. invalid close code requested
            emit({"event": "error", "error": err_str(e)})
        await ws.wait_closed()
        emit({"event": "close", "code": ws.close_code, "reason": ws.close_reason or ""})

    ssl_ctx = None
    if args.tls_cert or args.tls_key:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)

    kwargs = deflate_kwargs(args, server=True)
    if args.subprotocol:
        kwargs["subprotocols"] = [args.subprotocol]
    server = await websockets.serve(
        handler,
        args.host,
        args.port,
        ssl=ssl_ctx,
        max_size=MAX_SIZE,
        ping_interval=None,
        create_protocol=PingReportingProtocol,
        **kwargs,
    )
    port = server.sockets[0].getsockname()[1]
    emit({"event": "listening", "port": port})

    if not args.ignore_stdin:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read1(65536):
                    pass
            except Exception:
                pass
            loop.call_soon_threadsafe(shutdown, "stdin-eof")

        threading.Thread(target=watch_stdin, daemon=True).start()
    loop.call_later(args.timeout, shutdown, "timeout")

    why = await done
    emit({"event": "exit", "reason": why})
    sys.stdout.flush()
    os._exit(0)


# ------------------------------------------------------------------ client

UTF8_POOL = ["a", "Z", "0", " ", "~", "é", "ß", "Ж", "ع", "€", "中", "文", "✓", "😀", "🚀", "𝄞"]


def make_binary(size, seed):
    return random.Random(seed).randbytes(size)


def make_text(size, seed):
    """Valid UTF-8 (as str) of exactly `size` encoded bytes, with 1-4 byte chars."""
    rng = random.Random(seed)
    parts, n = [], 0
    while n < size:
        chunk = "".join(rng.choices(UTF8_POOL, k=max(16, (size - n) // 2)))
        parts.append(chunk)
        n += len(chunk.encode("utf-8"))
    b = "".join(parts).encode("utf-8")[:size]
    s = b.decode("utf-8", "ignore")  # drop a cut trailing character
    return s + "a" * (size - len(s.encode("utf-8")))


async def run_client(args):
    results = {"finished": False}

    def finish(ok, error=None):
        if results["finished"]:
            return
        results["finished"] = True
        ev = {"event": "result", "ok": ok}
        if not ok:
            ev["error"] = str(error)
        emit(ev)
        sys.stdout.flush()
        os._exit(0 if ok else 1)

    hard_timeout(args.timeout, lambda: finish(False, f"timeout after {args.timeout}s"))

    ssl_ctx = None
    if args.url.startswith("wss:"):
        ssl_ctx = ssl.create_default_context()
        if args.insecure:
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE

    kwargs = deflate_kwargs(args, server=False)
    if args.subprotocol:
        kwargs["subprotocols"] = [args.subprotocol]

    async def step(name, coro, timeout=60):
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            emit({"event": "step", "name": name, "ok": False, "error": f"step timeout {timeout}s"})
            raise RuntimeError(f"{name}: step timeout {timeout}s")
        except Exception as e:
            emit({"event": "step", "name": name, "ok": False, "error": err_str(e)})
            raise
        emit({"event": "step", "name": name, "ok": True, "ms": int((time.monotonic() - t0) * 1000)})

    async def echo(ws, name, data):
        await ws.send(data)
        got = await ws.recv()
        if type(got) is not type(data):
            raise RuntimeError(f"{name}: wrong type: got {type(got).__name__}, want {type(data).__name__}")
        if got != data:
            raise RuntimeError(f"{name}: echo mismatch: got {len(got)} units, want {len(data)}")

    try:
        async with websockets.connect(
            args.url,
            ssl=ssl_ctx,
            max_size=MAX_SIZE,
            ping_interval=None,
            open_timeout=30,
            **kwargs,
        ) as ws:
            emit({
                "event": "open",
                "protocol": ws.subprotocol or "",
                "extensions": ws.response_headers.get("Sec-WebSocket-Extensions", ""),
            })
            sizes = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20]
            if args.max_size is not None:
                sizes = [n for n in sizes if n <= args.max_size]
            seed = 1
            for binary in (False, True):
                for size in sizes:
                    name = ("binary-" if binary else "text-") + str(size)
                    data = make_binary(size, seed) if binary else make_text(size, seed)
                    seed += 1
                    await step(name, echo(ws, name, data))

            for binary in (False, True):
                name = ("binary" if binary else "text") + "-fragmented"
                mk = make_binary if binary else make_text
                pieces = [mk(10, 101), mk(0, 102), mk(70000, 103), mk(3, 104)]
                whole = (b"" if binary else "").join(pieces)

                async def frag(ws=ws, name=name, pieces=pieces, whole=whole):
                    await ws.send(pieces)  # iterable => one frame per piece
                    got = await ws.recv()
                    if type(got) is not type(whole) or got != whole:
                        raise RuntimeError(f"{name}: echo mismatch")

                await step(name, frag())

            async def ping():
                waiter = await ws.ping(f"ping from {LABEL}".encode())
                await waiter  # resolves only on a pong with the same payload

            await step("ping", ping(), timeout=15)

            async def close():
                await ws.close(4000, f"bye from {LABEL}")
                emit({"event": "close", "code": ws.close_code, "reason": ws.close_reason or ""})
                if ws.close_code != 4000:
                    raise RuntimeError(f"close code echoed {ws.close_code}, want 4000")

            await step("close", close(), timeout=30)

        if args.server_close:
            await step("server-close", server_close(args, ssl_ctx, kwargs), timeout=30)
    except Exception as e:
        finish(False, err_str(e))
    finish(True)


# The closing handshake the other way: a second connection asks the echo
# server to close with SERVER_CLOSE_CODE and SERVER_CLOSE_REASON, as the peer
# servers do on a text message "close:<code>:<reason>".
SERVER_CLOSE_CODE = 4001
SERVER_CLOSE_REASON = "server bye ✓"


async def server_close(args, ssl_ctx, kwargs):
    async with websockets.connect(
        args.url, ssl=ssl_ctx, max_size=MAX_SIZE, ping_interval=None, open_timeout=30, **kwargs
    ) as ws:
        await ws.send(f"close:{SERVER_CLOSE_CODE}:{SERVER_CLOSE_REASON}")
        try:
            msg = await ws.recv()
            raise RuntimeError(f"server-close: unexpected message {msg!r}")
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        emit({"event": "server-close", "code": ws.close_code, "reason": ws.close_reason or ""})
        if ws.close_code != SERVER_CLOSE_CODE or ws.close_reason != SERVER_CLOSE_REASON:
            raise RuntimeError(
                f"server-close: got {ws.close_code} {ws.close_reason!r}, "
                f"want {SERVER_CLOSE_CODE} {SERVER_CLOSE_REASON!r}"
            )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--url")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--no-context-takeover", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--log-headers", action="store_true")
    p.add_argument("--subprotocol")
    p.add_argument("--ignore-stdin", action="store_true")
    p.add_argument("--server-close", action="store_true")
    p.add_argument("--max-size", type=int)
    p.add_argument("--timeout", type=float, default=120)
    return p.parse_args(argv)


def main():
    try:
        args = parse_args(sys.argv[1:])
    except SystemExit:
        emit({"event": "result", "ok": False, "error": "bad arguments"})
        os._exit(2)
    if args.role == "client" and not args.url:
        emit({"event": "result", "ok": False, "error": "client needs --url"})
        os._exit(2)
    if args.role == "server":
        hard_timeout(args.timeout + 5, lambda: (emit({"event": "exit", "reason": "timeout"}), os._exit(0)))
        asyncio.run(run_server(args))
    else:
        asyncio.run(run_client(args))


if __name__ == "__main__":
    main()
