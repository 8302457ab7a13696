"""Throughput of ``mnistlab serve`` on loopback: many concurrent clients, two kinds of request.

Starts the server in a child process on a free loopback port, then sends ``--requests`` POST
requests from ``--clients`` concurrent clients (asyncio, one kept-alive connection each,
requests encoded once by httpx) for each kind:

* upload: a multipart PNG of a drawn digit as the page sends it (a test digit rendered at
  140x140, dark ink on white), prepared server-side as a photo (POST /predict);
* json: a 28x28 array, as an API client sends an MNIST-form image (POST /predict);
* inside: the same upload to POST /inside, the draw page's look inside (preparation steps,
  activations, integrated gradients, pushing units); not run unless asked for (--kinds inside).

Prints requests/s and p50/p99 latency per kind, and the errors (any non-200 answer or failed
connection counts; the exit status is 1 if there was one). Goals on 2 cores: >= 300 uploads/s,
>= 1,000 JSON requests/s, p99 <= 100 ms; inside: <= 50 ms of server CPU per request and a
median <= 50 ms (run it with --clients 1 to see one request's own time). Client and server share
the machine's cores, so on a
small machine the client's own cost is part of the figure; and on a busy machine every figure is
noisy: the load average is printed with the results.

    python bench/serve_load.py                          # quick model on the bundled sample
    python bench/serve_load.py runs/2026-...-notebook --workers 2 --requests 3000
    python bench/serve_load.py RUN --kinds inside --clients 1 --requests 300
"""

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402  (bench/_machine.py)

GOALS = {"upload": 300.0, "json": 1000.0, "inside": 20.0}  # requests/s on 2 cores
GOAL_INSIDE_MS = 50.0  # /inside: server CPU ms per request, and the median latency
GOAL_P99_MS = 100.0


def payloads(url: str, n: int = 64) -> dict[str, list[bytes]]:
    """Whole HTTP/1.1 requests (bytes) for each kind, from the bundled sample's test digits;
    httpx encodes them (multipart and JSON), once."""
    import httpx
    from PIL import Image

    from mnistlab import datasets

    def wire(path="/predict", **body) -> bytes:
        r = httpx.Request("POST", f"{url}{path}", **body)
        head = [f"POST {path} HTTP/1.1", f"Host: {r.url.netloc.decode()}"]
        head += [f"{k}: {v}" for k, v in r.headers.items() if k.lower() != "host"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + r.read()

    x = datasets.load("mnist-sample").x_test[:n]
    uploads, arrays, insides = [], [], []
    for d in x:
        big = np.asarray(Image.fromarray(d).resize((140, 140), Image.Resampling.BILINEAR), float)
        buf = io.BytesIO()
        Image.fromarray(np.clip(255 - big, 0, 255).astype(np.uint8)).save(buf, "PNG")
        uploads.append(wire(files={"file": ("digit.png", buf.getvalue(), "image/png")}))
        arrays.append(wire(json={"image": d.tolist()}))
        insides.append(wire("/inside", files={"file": ("digit.png", buf.getvalue(), "image/png")}))
    return {"upload": uploads, "json": arrays, "inside": insides}


async def load(url: str, requests: list[bytes], count: int, clients: int, max_seconds: float):
    """Latencies (s) of the answered requests, the errors, and the wall time.

    Each client is one kept-alive connection that sends prepared bytes and reads the answer by
    its Content-Length: an HTTP client library costs more CPU per request than the server
    does, and client and server share the cores here."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def client():
        nonlocal issued
        reader = writer = None
        while issued < count and time.perf_counter() < deadline:
            request = requests[issued % len(requests)]
            issued += 1
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(request)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
                body = await reader.readexactly(int(headers["content-length"]))
                if not head[0].startswith("HTTP/1.1 200 ") or b'"label"' not in body:
                    errors.append(f"{head[0]} {body[:100]!r}")
            except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                reader = writer = None
            latencies.append(time.perf_counter() - t0)
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return np.array(latencies), errors, time.perf_counter() - t0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live descendants,
    from /proc (Linux): the server's own cost, whatever else the machine is doing."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def quick_run(out: Path) -> Path:
    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    fit(Recipe(epochs=1), datasets.load("mnist-sample"), out=out, quiet=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "run",
        nargs="?",
        type=Path,
        default=None,
        help="a run folder (default: train a quick model on the bundled sample)",
    )
    p.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    p.add_argument("--requests", type=int, default=2000, help="requests per kind (default 2000)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop issuing requests of a kind after this long (default 60)",
    )
    p.add_argument("--kinds", default="upload,json", help="upload, json or both (default)")
    args = p.parse_args(argv)
    for name in ("workers", "requests", "clients", "max_seconds"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')}: expected a number > 0")
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(GOALS):
        p.error(f"--kinds: expected upload, json and/or inside, got {args.kinds!r}")
    _machine.header()

    from mnistlab.errors import MnistlabError
    from mnistlab.web import server as serve

    failed, capacity = False, {}
    try:
        with tempfile.TemporaryDirectory(prefix="mnistlab-serve-load-") as tmp:
            run = args.run or quick_run(Path(tmp) / "run")
            with serve.serving(run, workers=args.workers) as server:
                url, pid = server.url, server.process.pid
                bodies = payloads(url)
                print(
                    f"server: {url}, {args.workers} worker(s); {args.clients} clients; "
                    f"{os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}"
                )
                print(
                    f"{'kind':<8}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}"
                    f"{'p99 ms':>9}{'server':>9}{'client':>9}  goal"
                )
                for kind in kinds:
                    warm = min(args.requests, 4 * args.clients)
                    asyncio.run(load(url, bodies[kind], warm, args.clients, args.max_seconds))
                    cpu0 = tree_cpu(pid), own_cpu()
                    lat, errors, wall = asyncio.run(
                        load(url, bodies[kind], args.requests, args.clients, args.max_seconds)
                    )
                    server_ms = (tree_cpu(pid) - cpu0[0]) / len(lat) * 1e3
                    client_ms = (own_cpu() - cpu0[1]) / len(lat) * 1e3
                    rate = len(lat) / wall
                    p50, p99 = np.percentile(lat, [50, 99]) * 1e3
                    meets = rate >= GOALS[kind] and p99 <= GOAL_P99_MS and not errors
                    goal = f">= {GOALS[kind]:.0f}/s, p99 <= {GOAL_P99_MS:.0f} ms"
                    if kind == "inside":  # one request's own time, not a throughput
                        meets = max(server_ms, p50) <= GOAL_INSIDE_MS and not errors
                        goal = f"server and p50 <= {GOAL_INSIDE_MS:.0f} ms"
                    print(
                        f"{kind:<8}{len(lat):>9}{len(errors):>8}{rate:>9.0f}{p50:>9.1f}"
                        f"{p99:>9.1f}{server_ms:>9.2f}{client_ms:>9.2f}"
                        f"  {goal}: {'meets' if meets else 'misses'}"
                    )
                    for e in sorted(set(errors))[:5]:
                        print(f"  error: {e}")
                    failed |= bool(errors)
                    capacity[kind] = (server_ms, client_ms)
                print(
                    f"load average after: {os.getloadavg()[0]:.1f} (above the core count, "
                    "the machine is busy and the rates and latencies are noisy)"
                )
                print(
                    "server, client: CPU ms per request (the server's processes, this "
                    "client's), less swayed by other load than the rates. From them, on 2"
                )
                print(
                    "idle cores the server alone would answer about "
                    + ", ".join(
                        f"{kind} {2000 / s:,.0f}/s ({2000 / (s + c):,.0f}/s with this client "
                        f"on the same cores)"
                        for kind, (s, c) in capacity.items()
                    )
                )
    except MnistlabError as exc:
        print(f"error: {exc}")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
