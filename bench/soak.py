#!/usr/bin/env python3
"""Soak test: a steady stream of distinct, signed DM events into
`POST /slack/events` of a release build for a long time, with the process's
memory sampled every few seconds, and at the end a check that every
acknowledged event became exactly one replied exchange.

Everything real but Slack: robeing (release), the machine's PostgreSQL, and
(with --chroma) a real ChromaDB server, so vector memory and its upsert
worker run too; its SQLite in WAL mode, as docs/operations.md runs it
(ROBEING_CHROMA_JOURNAL=delete keeps ChromaDB's default). Slack is
bench/fake_slack.py on loopback.

Usage: python3 bench/soak.py [--minutes 30] [--rate 50] [--sample 5] [--chroma] [--llm] [--prefill N]
Results: a CSV of (seconds, rss_kib) in --out, and a summary with the RSS
slope (least squares, after a warm-up), the counts, and per minute of the run
the p50/p99/max time from an event's acknowledgement to its reply being
recorded (slack_events.received_at → exchanges.replied_at, both Postgres's
clock; the reply is posted just before it is recorded). With --llm replies go
through an instant fake LLM, so each one also recalls the user's memories
from ChromaDB once their history outgrows the prompt. Also per minute: the
CPU time robeing, PostgreSQL (all its processes), ChromaDB and the fake
Slack spent per DM; and, where PostgreSQL loads pg_stat_statements, each
statement's calls and mean time in minute 1-2 against the last two minutes.
--prefill N stores N handled events first (a month's retention window).
Needs: a release build (BENCH_BIN or $CARGO_TARGET_DIR/release/robeing),
psql, PostgreSQL at BENCH_ADMIN_URL.
"""
import argparse, hashlib, hmac, http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=30)
ap.add_argument("--rate", type=float, default=50, help="events per second")
ap.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
ap.add_argument("--warmup", type=float, default=120, help="seconds left out of the slope")
ap.add_argument("--users", type=int, default=50)
ap.add_argument("--chroma", action="store_true", help="run a real ChromaDB and turn memory on")
ap.add_argument("--llm", action="store_true",
                help="reply through an instant fake LLM (bench/fake_slack.py), so every reply also recalls memories")
ap.add_argument("--prefill", type=int, default=0,
                help="handled events already stored before the run (a deployment's retention window), spread over 30 days")
ap.add_argument("--out", default="soak.csv")
args = ap.parse_args()
if args.warmup >= args.minutes * 60:
    ap.error(f"--warmup ({args.warmup:g} s) must be shorter than the run (--minutes {args.minutes:g} = {args.minutes * 60:g} s): "
             "the memory slope is fitted to the samples after it")
if args.rate / args.users > 1:
    # Replies are paced to about one per second per channel (Slack's
    # chat.postMessage limit), so faster than that per user, replies fall
    # behind by design and the run measures the pacing, not robeing.
    sys.exit(f"--rate {args.rate} over --users {args.users} is more than one DM per second per user: "
             "replies are paced to about one per second per channel; use more users or a lower rate")

from benchlib import cpu_ms, free_port, proc_stat, psql, wait_http  # noqa: E402 (bench/ is on sys.path)

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
admin = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
binary = os.environ.get("BENCH_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "robeing")
if not os.access(binary, os.X_OK):
    sys.exit(f"no release build at {binary}: run cargo build --release")


def postgres_cpu_ms():
    """CPU time all of this machine's PostgreSQL processes have used so far:
    the backends serving robeing, but also autovacuum, the WAL writer and
    the checkpointer (nothing else uses PostgreSQL during a soak). The
    postmaster counts its children that ended."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = proc_stat(pid)
        if stat is None or stat[0] != "postgres":
            continue
        parent = proc_stat(stat[1][1])
        postmaster = parent is not None and parent[0] != "postgres"
        total += cpu_ms(pid, children=postmaster, stat=stat)
    return total


def statements(url):
    """pg_stat_statements' counters for the soak's database, by statement:
    {queryid: (calls, total exec ms, text)}; None when PostgreSQL does not
    load it (shared_preload_libraries)."""
    try:
        rows = psql(url, "SELECT queryid, calls, total_exec_time, regexp_replace(left(query, 90), '\\s+', ' ', 'g') "
                         "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
    except subprocess.CalledProcessError:
        return None
    found = {}
    for row in rows.splitlines():
        qid, calls, ms, text = row.split("|", 3)
        found[qid] = (int(calls), float(ms), text)
    return found


def statement_means(before, after):
    """{queryid: (calls, mean exec ms, text)} between two snapshots."""
    means = {}
    for qid, (calls, ms, text) in after.items():
        c0, m0, _ = before.get(qid, (0, 0.0, text))
        if calls > c0:
            means[qid] = (calls - c0, (ms - m0) / (calls - c0), text)
    return means


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


work = tempfile.mkdtemp(prefix="robeing-soak-")
db = f"robeing_soak_{int(time.time())}"
psql(admin, f"CREATE DATABASE {db}")
db_url = admin.rsplit("/", 1)[0] + "/" + db
try:  # per-statement times early and late in the run, where PostgreSQL loads pg_stat_statements
    psql(db_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
except subprocess.CalledProcessError:
    pass
procs = []
secret = f"soak-secret-{time.time()}"
port, slack_port = free_port(), free_port()
procs.append(subprocess.Popen([sys.executable, os.path.join(root, "bench", "fake_slack.py"), str(slack_port)]))
env = {
    "PATH": os.environ["PATH"], "DATABASE_URL": db_url, "ROBEING_LISTEN": f"127.0.0.1:{port}",
    "SLACK_BOT_TOKEN": "xoxb-soak", "SLACK_SIGNING_SECRET": secret,
    "SLACK_API_URL": f"http://127.0.0.1:{slack_port}/api", "LOG_FORMAT": "json", "RUST_LOG": "warn",
    "NEWS_FEEDS": "http://127.0.0.1:9/feed.xml", "BRIEFING_SCHEDULER": "off",
}
if args.llm:
    env.update({"LLM_BASE_URL": f"http://127.0.0.1:{slack_port}/v1", "LLM_MODEL": "bench"})
if args.chroma:
    chroma_bin = os.environ.get("ROBEING_CHROMA_BIN", os.path.expanduser("~/.cache/robeing/chroma-venv/bin/chroma"))
    chroma_port = free_port()
    if os.environ.get("ROBEING_CHROMA_JOURNAL") != "delete":  # WAL, as docs/operations.md runs ChromaDB
        subprocess.run([sys.executable, os.path.join(root, "deploy", "chroma-wal.py"), os.path.join(work, "chroma")], check=True)
    procs.append(subprocess.Popen([chroma_bin, "run", "--path", os.path.join(work, "chroma"), "--host", "127.0.0.1",
                                   "--port", str(chroma_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "ANONYMIZED_TELEMETRY": "False"}))
    wait_http(chroma_port, "/api/v2/heartbeat")
    env["CHROMA_URL"] = f"http://127.0.0.1:{chroma_port}"
log = open(os.path.join(work, "robeing.log"), "w")
if args.prefill:
    # A month of handled events, as a deployment keeps them (RETENTION_DAYS), vacuumed: the queue's table is large
    # and the run adds to it.
    subprocess.run([binary, "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, check=True)
    psql(db_url, f"""INSERT INTO slack_events (event_id, team_id, kind, source, payload, received_at, run_at, state,
                                              attempts, finished_at)
                     SELECT 'EvPRE' || g, 'T0ROBEING', 'message', 'http', '{{"type":"event_callback"}}', t, t, 'done', 1, t
                     FROM generate_series(1, {args.prefill}) g,
                          LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / {args.prefill})) AS at(t)""")
    psql(db_url, "VACUUM ANALYZE slack_events")
app = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
procs.append(app)


def cleanup():
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    try:
        psql(admin, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(work, ignore_errors=True)


try:
    wait_http(port, "/healthz")
    start = time.time()
    duration = args.minutes * 60
    sent = [0]
    acked = [0]
    errors = {}
    lock = threading.Lock()

    def event(i):
        ts = str(int(time.time()))
        user = "U0SOAK%03d" % (i % args.users)
        body = json.dumps({
            "token": "unused", "team_id": "T0ROBEING", "api_app_id": "A0ROBEING", "type": "event_callback",
            "event_id": "EvSOAK%09d" % i, "event_time": int(ts),
            "event": {"type": "message", "channel": "D%s" % user[1:], "channel_type": "im", "user": user,
                      "text": "soak message %d: 오늘 회의는 몇 시였지?" % i, "ts": "%s.%06d" % (ts, i % 1000000),
                      "event_ts": "%s.%06d" % (ts, i % 1000000), "client_msg_id": "%08x-soak" % i},
        }, ensure_ascii=False, separators=(",", ":")).encode()
        sig = "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        return body, {"content-type": "application/json", "x-slack-request-timestamp": ts, "x-slack-signature": sig}

    def sender(worker, workers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = worker
        interval = workers / args.rate
        due = start + worker / args.rate
        while True:
            now = time.time()
            if now - start >= duration:
                return
            if due > now:
                time.sleep(due - now)
            body, headers = event(i)
            retry = 0
            while True:  # like Slack: redeliver on failure, with X-Slack-Retry-Num
                try:
                    h = dict(headers)
                    if retry:
                        h["x-slack-retry-num"] = str(retry)
                    conn.request("POST", "/slack/events", body=body, headers=h)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                    key = f"HTTP {resp.status}"
                except OSError as e:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    key = type(e).__name__
                with lock:
                    errors[key] = errors.get(key, 0) + 1
                retry += 1
                time.sleep(min(2 ** retry, 10))
            with lock:
                sent[0] += 1
                acked[0] += 1
            i += workers
            due += interval

    workers = 4
    threads = [threading.Thread(target=sender, args=(w, workers), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    def waiting():
        """(events not yet handled, exchanges not yet replied, jobs queued or running)."""
        return tuple(int(x) for x in psql(db_url, "SELECT (SELECT count(*) FROM slack_events WHERE state <> 'done'), "
                                                  "(SELECT count(*) FROM exchanges WHERE status = 'received'), "
                                                  "(SELECT count(*) FROM jobs WHERE state IN ('queued', 'running'))").split("|"))

    samples = []
    # (seconds, acknowledged, CPU ms so far of: robeing, PostgreSQL, ChromaDB, fake Slack), every sample
    cpu = []
    fake_slack, chroma_proc = procs[0], (procs[1] if args.chroma else None)
    # pg_stat_statements snapshots: minute 1 to 2 of the load, and its last two minutes
    marks = [60, 120, max(duration - 120, 121), duration]
    snapshots = []
    chroma_wal_kib = [0]
    with open(args.out, "w") as out:
        out.write("seconds,rss_kib,acked,events_waiting,jobs_waiting\n")
        while any(t.is_alive() for t in threads):
            t = time.time() - start
            r = rss_kib(app.pid)
            backlog = "%d,%d" % waiting()[::2] if int(t) % 30 < args.sample else ","
            samples.append((t, r))
            if len(snapshots) < len(marks) - 1 and t >= marks[len(snapshots)]:
                snapshots.append(statements(db_url))
            cpu.append((t, acked[0], cpu_ms(app.pid), postgres_cpu_ms(),
                        cpu_ms(chroma_proc.pid, children=True) if chroma_proc else 0, cpu_ms(fake_slack.pid)))
            if args.chroma:  # ChromaDB's SQLite WAL must stay bounded (its checkpoints keep up)
                wal = os.path.join(work, "chroma", "chroma.sqlite3-wal")
                chroma_wal_kib[0] = max(chroma_wal_kib[0], os.path.getsize(wal) // 1024 if os.path.exists(wal) else 0)
            out.write(f"{t:.1f},{r},{acked[0]},{backlog}\n")
            out.flush()
            time.sleep(args.sample)
    if len(snapshots) == len(marks) - 1:  # the end of the load
        snapshots.append(statements(db_url))
    # Let the workers finish the last events, then count.
    drain_started = time.time()
    deadline = drain_started + 600
    while time.time() < deadline:
        if not any(waiting()):
            break
        time.sleep(1)
    drain_secs = time.time() - drain_started
    unfinished = waiting()[0]
    stats = psql(db_url, "SELECT (SELECT count(*) FROM slack_events), (SELECT count(*) FROM exchanges), "
                         "(SELECT count(*) FROM exchanges WHERE status='replied'), (SELECT count(*) FROM exchanges WHERE status='failed'), "
                         "(SELECT count(*) FROM exchanges WHERE memorized_at IS NOT NULL), (SELECT count(*) FROM jobs WHERE state = 'dead'), (SELECT count(*) FROM (SELECT event_id FROM exchanges GROUP BY 1 HAVING count(*) > 1) d)")
    events, exchanges, replied, failed, memorized, dead, dup = (int(x) for x in stats.split("|"))
    # Each replied event: when it was acknowledged, and ms until its reply was recorded.
    latencies = """SELECT s.received_at, extract(epoch FROM x.replied_at - s.received_at) * 1000 AS ms
                   FROM exchanges x JOIN slack_events s USING (event_id) WHERE x.replied_at IS NOT NULL"""
    reply_ms = psql(db_url, f"""
        WITH l AS ({latencies}), t0 AS (SELECT min(received_at) AS t FROM l)
        SELECT floor(extract(epoch FROM l.received_at - t0.t) / 60)::int,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1)
        FROM l, t0 GROUP BY 1 ORDER BY 1""")
    reply_latency = [dict(zip(("minute", "p50_ms", "p99_ms", "max_ms"), (float(v) for v in row.split("|"))))
                     for row in reply_ms.splitlines()]
    overall = psql(db_url, f"""SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM ({latencies}) l""").split("|")
    pts = [(t, r) for t, r in samples if t >= args.warmup]
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mr = sum(r for _, r in pts) / n
    slope = sum((t - mt) * (r - mr) for t, r in pts) / sum((t - mt) ** 2 for t, _ in pts)  # KiB per second
    rs = sorted(r for _, r in pts)
    print(json.dumps({
        "minutes": args.minutes, "rate_per_s": args.rate, "chroma": args.chroma, "prefill": args.prefill,
        # off makes the queues slow down with the run (docs/operations.md, "PostgreSQL's autovacuum")
        "postgres_autovacuum": psql(admin, "SHOW autovacuum"), "acked": acked[0],
        "retries_by_cause": errors, "slack_events": events, "exchanges": exchanges, "replied": replied,
        "failed": failed, "memorized": memorized, "dead_jobs": dead, "duplicate_exchanges": dup,
        "events_unfinished_at_end": unfinished, "lost": acked[0] - exchanges - unfinished, "drain_secs_after_load": round(drain_secs),
        "rss_kib_first_after_warmup": pts[0][1], "rss_kib_last": pts[-1][1], "rss_kib_median": rs[n // 2],
        "rss_kib_max": rs[-1], "rss_slope_kib_per_hour": round(slope * 3600, 1), "samples": n,
        "chroma_wal_kib_max": chroma_wal_kib[0] if args.chroma else None, "llm": args.llm,
        "ack_to_reply_ms_p50": float(overall[0]), "ack_to_reply_ms_p99": float(overall[1]),
    }, indent=2))
    def cpu_per_dm(minute):
        """CPU ms per acknowledged DM in minute `minute` of the load, per
        process: robeing, PostgreSQL, ChromaDB, fake Slack."""
        inside = [c for c in cpu if minute * 60 <= c[0] < (minute + 1) * 60]
        if len(inside) < 2 or inside[-1][1] == inside[0][1]:
            return None
        first, last = inside[0], inside[-1]
        return [(b - a) / (last[1] - first[1]) for a, b in zip(first[2:], last[2:])]

    if len(snapshots) == len(marks) and all(x is not None for x in snapshots):
        early, late = statement_means(*snapshots[:2]), statement_means(*snapshots[2:])
        print("statements by late total time: calls and mean exec ms, minute 1-2 vs last 2 minutes")
        for qid, (calls, mean, text) in sorted(late.items(), key=lambda kv: -kv[1][0] * kv[1][1])[:10]:
            c0, m0, _ = early.get(qid, (0, float("nan"), text))
            print(f"  {c0:>7} x {m0:7.3f} ms  ->  {calls:>7} x {mean:7.3f} ms   {text}")
    else:
        print("(no per-statement times: PostgreSQL does not load pg_stat_statements, or the run was shorter than 4 minutes)")
    print("minute  ack→reply p50 / p99 / max (ms)   CPU ms per DM: robeing / PostgreSQL / ChromaDB / fake Slack")
    for row in reply_latency:
        per_dm = cpu_per_dm(int(row['minute']))
        cpu_text = " / ".join(f"{v:.2f}" for v in per_dm) if per_dm else "-"
        print(f"{int(row['minute']):>6}  {row['p50_ms']:>8} / {row['p99_ms']:>8} / {row['max_ms']:>8}   {cpu_text}")
finally:
    cleanup()
