"""How fast the studio feels: launch to first page, and Start to the first point on the loss curve.

    python benchmarks/app_startup.py [--runs 1]

Starts `python app.py` in a fresh temporary workspace, polls the page until it answers HTTP 200,
then drives the default sample run (bundled reviews.csv, offline MiniLM, default settings) through
gradio_client exactly as the browser would: load the sample, press Start, poll the status until
the first training-loss value exists. The run is started twice: "cold" right after launch (torch
and transformers may still be importing in the background) and "warm" after that. Prints a table.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0) -> float:
    """Seconds until `url` answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def first_loss(client, name: str, owner: str, timeout: float = 300.0) -> tuple[float, dict]:
    """Press Start (default settings, this run name) and time until the first loss value."""
    start = time.perf_counter()
    job = client.predict(f"name: {name}", owner, api_name="/start")
    while time.perf_counter() - start < timeout:
        status = client.predict(job["job_id"], owner, api_name="/status")
        if status["losses"] or status["state"] in ("failed", "stopped", "completed"):
            return time.perf_counter() - start, status
        time.sleep(0.1)
    raise TimeoutError("no loss value within the timeout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args()
    from gradio_client import Client

    workspace = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    launched = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--workspace", str(workspace),
                               "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows = []
    try:
        http = wait_http(url)
        rows.append(("python app.py -> first HTTP 200", http))
        client = Client(url, verbose=False)
        started = time.perf_counter()
        client.predict("reviews.csv", owner="bench", api_name="/load_data")
        rows.append(("load the reviews sample (Data tab)", time.perf_counter() - started))
        for label, name in (("cold", "bench-cold"), ("warm", "bench-warm")):
            seconds, status = first_loss(client, name, "bench")
            if status["state"] == "failed":
                raise RuntimeError(status["error"])
            rows.append((f"Start -> first loss point ({label})", seconds))
            client.predict(status["job_id"], "bench", api_name="/stop")
            while client.predict(status["job_id"], "bench", api_name="/status")["state"] not in (
                    "stopped", "completed", "failed"):
                time.sleep(0.2)
        rows.append(("whole benchmark", time.perf_counter() - launched))
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        if not args.keep:
            import shutil
            shutil.rmtree(workspace, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)} | seconds")
    print(f"{'-' * width}-|--------")
    for what, seconds in rows:
        print(f"{what.ljust(width)} | {seconds:7.2f}")


if __name__ == "__main__":
    main()
