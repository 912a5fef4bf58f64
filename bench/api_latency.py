"""Warm text-query latency through the web API (facesearch serve) on 10,000 faces.

    python bench/api_latency.py [--faces 10000] [--repeats 5]

Builds a temporary index of synthetic faces through the real storage (bench/text_query.py's
synthetic_faces and build_index: 7 unit-norm blocks around the shipped class centres, class
probabilities that agree), then times, warm, for text_query.QUERIES (k=10):
- baseline: `FaceSearch.query(text=...)` called directly, in the same process and run;
- the API in process: GET /api/search through FastAPI's TestClient (routing, the lock, the
  thread pool, JSON);
- the API over HTTP: the app on uvicorn on a loopback port, GET /api/search with httpx (what a
  browser's request costs, minus the browser).
Target: the API over HTTP ≤ 50 ms median on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_query import QUERIES, build_index, clock, synthetic_faces  # noqa: E402  (bench/)

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from facesearch import FaceSearch  # noqa: E402
from facesearch.server import create_app  # noqa: E402


def report(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    print(f"  {name:52} median {median:6.1f} ms   p90 {p90:6.1f}   min {min(times):6.1f}   max {max(times):6.1f}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        ms, (vectors, probabilities) = clock(synthetic_faces, args.faces)
        ms += clock(build_index, folder, vectors, probabilities)[0]
        print(f"python {sys.version.split()[0]}, {args.faces} synthetic faces, built in {ms / 1000:.1f} s")
        fs = FaceSearch(folder)
        app = create_app(search=fs)
        client = TestClient(app)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}")

        def direct(q: str) -> float:
            return clock(lambda: fs.query(text=q, k=10))[0]

        def in_process(q: str) -> float:
            ms, response = clock(lambda: client.get("/api/search", params={"text": q, "k": 10}))
            assert response.status_code == 200 and len(response.json()["hits"]) == 10, response.text
            return ms

        def over_http(q: str) -> float:
            ms, response = clock(lambda: http.get("/api/search", params={"text": q, "k": 10}))
            assert response.status_code == 200 and len(response.json()["hits"]) == 10, response.text
            return ms

        for q in QUERIES:  # warm: the text model, the index, every query's parse
            direct(q), in_process(q), over_http(q)
        times: dict[str, list[float]] = {"direct": [], "in_process": [], "http": []}
        for _ in range(args.repeats):  # interleaved, so load from other work hits all alike
            for q in QUERIES:
                times["direct"].append(direct(q))
                times["in_process"].append(in_process(q))
                times["http"].append(over_http(q))
        print(f"\nwarm text queries, k=10, {len(QUERIES)} queries x {args.repeats}:")
        base = report("baseline: FaceSearch.query(text=...) directly", times["direct"])
        report("GET /api/search, in process (TestClient)", times["in_process"])
        api = report("GET /api/search over HTTP (uvicorn, loopback)", times["http"])
        print(f"\nAPI over HTTP: {api:.1f} ms median ({api - base:+.1f} ms over the direct call); "
              f"target ≤ 50 ms: {'met' if api <= 50 else 'NOT met'}")
        http.close()
        server.should_exit = True
        thread.join(10)
        fs.close()


if __name__ == "__main__":
    main()
