#!/usr/bin/env python3
"""Start-up benchmark for `robeing serve` (issue: foundation).

Measures, over N runs of the release binary against a real PostgreSQL and a
fake Slack on loopback:
  - start-to-ready: from spawning the process to the first `GET /readyz` = 200;
  - idle RSS: VmRSS of the process 5 s after it became ready.
Prints medians (and min/max). Usage:
  cargo build --release && python3 bench/startup.py [--runs 15] [--binary target/release/robeing]
Needs PostgreSQL on 127.0.0.1:5432 (TEST_DATABASE_URL, default postgres://postgres:postgres@127.0.0.1:5432/postgres).
"""
import argparse, http.server, json, os, socket, statistics, subprocess, sys, threading, time, urllib.request


class FakeSlack(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        body = json.dumps({"ok": True, "url": "https://bench.slack.com/", "team": "bench", "user": "robeing",
                           "team_id": "T0BENCH", "user_id": "U0BOT", "bot_id": "B0BOT"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *a):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--binary", default="target/release/robeing")
    args = ap.parse_args()

    admin = os.environ.get("TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
    db = "robeing_bench_startup"
    subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db}"], check=True)
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {db}"], check=True)
    db_url = admin.rsplit("/", 1)[0] + "/" + db

    slack = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeSlack)
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": "bench-secret",
        "SLACK_API_URL": f"http://127.0.0.1:{slack.server_address[1]}/api",
        "RUST_LOG": "warn",
        "LOG_FORMAT": "json",
    }
    # One warm-up run applies the migrations, so runs measure a normal start.
    ready_ms, rss_kb = [], []
    for i in range(args.runs + 1):
        port = free_port()
        env["ROBEING_LISTEN"] = f"127.0.0.1:{port}"
        t0 = time.perf_counter()
        proc = subprocess.Popen([args.binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = None
        while time.perf_counter() - t0 < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        elapsed = (time.perf_counter() - t0) * 1000
                        break
            except Exception:
                pass
            if proc.poll() is not None:
                sys.exit(f"robeing exited with {proc.returncode}")
            time.sleep(0.002)
        if elapsed is None:
            proc.kill()
            sys.exit("robeing did not become ready within 20 s")
        time.sleep(5)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        proc.terminate()
        proc.wait(timeout=20)
        if i > 0:
            ready_ms.append(elapsed)
            rss_kb.append(rss)
    slack.shutdown()
    print(f"runs: {args.runs}")
    print(f"start-to-ready ms: median {statistics.median(ready_ms):.1f}, min {min(ready_ms):.1f}, max {max(ready_ms):.1f}")
    print(f"idle RSS MiB:      median {statistics.median(rss_kb)/1024:.1f}, min {min(rss_kb)/1024:.1f}, max {max(rss_kb)/1024:.1f}")


if __name__ == "__main__":
    main()
