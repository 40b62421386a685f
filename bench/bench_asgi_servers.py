"""Which ASGI server: uvicorn, Hypercorn, Granian and uvicorn with `impactwatch.serving` (its
receipt-deadline protocol), each serving the same trivial ASGI app (`app` below) in its own
process on loopback, with default settings, measured against the slow-client figures.

Per server:
- GET /healthz every 150 ms on new connections while 200 connections each send one byte per
  second of a request head, for `--seconds` (default 35: past Granian's 30 s header timeout):
  the probes' p50/p99/max and failures, and when the server cut the slow connections (seconds
  after their first byte; "none" = still held at the end);
- requests/s of a small POST (200-byte body, read whole, answered 202): 4 client processes in a
  closed loop for 3 s, once on kept-alive connections (as Alertmanager posts) and once with a
  new connection per request (as the listener plugin posts).

uvicorn and `impactwatch.serving` run in this venv; Hypercorn and Granian are not impactwatch
dependencies: install them into a throwaway venv and name it with `--venv`, e.g.

    python -m venv /tmp/iw-asgi-venv && /tmp/iw-asgi-venv/bin/pip install hypercorn granian
    .venv/bin/python bench/bench_asgi_servers.py --venv /tmp/iw-asgi-venv

Without `--venv` only the two uvicorn rows run. The choice these figures support is written in
docs/design-notes.md, "Serving HTTP".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"schema": "bench", "events": ["x" * 160]}).encode()


# --- the app every server serves (imported by name, so only the standard library here) ------
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/healthz: 200; POST: the body read whole, 202; else 404."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    status, text = 404, b"not found\n"
    if scope["method"] == "POST":
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, text = 202, b'{"accepted": %d}' % size
    elif scope["path"] == "/healthz":
        status, text = 200, b'{"status": "ok"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": text})


def serve_with_deadlines(port: int) -> None:
    """uvicorn with impactwatch.serving's protocol and its default limits (a child process)."""
    sys.path.insert(0, str(HERE.parent))
    from impactwatch.serving import Server, ServerLimits

    Server(app, "127.0.0.1", port, ServerLimits(), name="bench").run()


# --- servers, as child processes --------------------------------------------------------------
def argv_for(kind: str, port: int, venv: Path | None) -> list[str]:
    here = sys.executable
    other = str(venv / "bin" / "python") if venv else ""
    target = "bench_asgi_servers:app"
    host = "127.0.0.1"
    return {
        "uvicorn (httptools)": [here, "-m", "uvicorn", "--http", "httptools", "--host", host,
                                "--port", str(port), "--no-access-log", "--log-level", "warning",
                                target],
        "uvicorn + impactwatch.serving": [here, str(Path(__file__)), "--serve-deadlines",
                                          str(port)],
        "Hypercorn (h11)": [other, "-m", "hypercorn", "--bind", f"{host}:{port}",
                            "--log-level", "warning", target],
        "Granian": [other, "-m", "granian", "--interface", "asgi", "--host", host, "--port",
                    str(port), "--workers", "1", "--log-level", "warning", target],
    }[kind]  # fmt: skip


def start(kind: str, venv: Path | None) -> tuple[subprocess.Popen[bytes], int]:
    import urllib.request

    from bench_router_common import _free_port

    port = _free_port()
    proc = subprocess.Popen(
        argv_for(kind, port, venv),
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"{kind} did not answer")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- throughput ---------------------------------------------------------------------------
def poster(port: int, keepalive: bool, until: float, out: Any) -> None:
    import http.client

    done = errors = 0
    conn: http.client.HTTPConnection | None = None
    headers = {"Content-Type": "application/json"}
    while time.time() < until:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/events", BODY, headers)
            resp = conn.getresponse()
            resp.read()
            done += resp.status == 202
            errors += resp.status != 202
        except OSError:
            errors += 1
            conn = None
            continue
        if not keepalive:
            conn.close()
            conn = None
    out.put((done, errors))


def post_rate(port: int, keepalive: bool, clients: int = 4, seconds: float = 3.0) -> float:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out: Any = ctx.Queue()
    until = time.time() + seconds
    procs = [ctx.Process(target=poster, args=(port, keepalive, until, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    return sum(done for done, _ in results) / seconds


def measure(kind: str, venv: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    from slow_clients import under_slow_clients

    print(kind, file=sys.stderr, flush=True)
    proc, port = start(kind, venv)
    try:
        slow, probes = under_slow_clients(
            port, f"http://127.0.0.1:{port}", ["/healthz"], args.connections, args.seconds
        )
        time.sleep(1.0)
        keepalive = post_rate(port, True)
        fresh = post_rate(port, False)
    finally:
        stop(proc)
    return {"slow": slow, "probes": probes, "keepalive": keepalive, "fresh": fresh}


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    import report
    from bench_slow_clients import cut_text, probe_text

    rows = []
    for kind, r in results.items():
        rows.append(
            (
                kind,
                probe_text(r["probes"]),
                cut_text(r["slow"]),
                f"{r['keepalive']:,.0f}",
                f"{r['fresh']:,.0f}",
            )
        )
    return report.table(
        f"ASGI servers, default settings, one process each, loopback, {os.cpu_count()} cores:"
        f" GET /healthz every 150 ms under {args.connections} slow heads (1 byte/s for"
        f" {args.seconds:g} s), then POST req/s (200-byte body, 4 clients, 3 s)",
        ("server", "/healthz under slow heads", "slow heads cut", "POST/s kept alive",
         "POST/s new connection"),
        rows,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="a venv with hypercorn and granian")
    parser.add_argument("--seconds", type=float, default=35.0, help="slow heads held at most")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--only", nargs="+", help="server names (prefixes) to run")
    parser.add_argument("--serve-deadlines", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_deadlines:
        serve_with_deadlines(args.serve_deadlines)
        return 0
    kinds = ["uvicorn (httptools)", "uvicorn + impactwatch.serving"]
    if args.venv:
        kinds += ["Hypercorn (h11)", "Granian"]
    if args.only:
        kinds = [k for k in kinds if any(k.startswith(o) for o in args.only)]
    results = {kind: measure(kind, args.venv, args) for kind in kinds}
    print(render(results, args))
    print(f"\nload average (1, 5, 15 min) at the end {os.getloadavg()} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
