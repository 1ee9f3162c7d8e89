#!/usr/bin/env python3
"""Memory's catch-up at start-up (src/memory/catch_up.rs), end to end.

Stores a history of N replied exchanges that ChromaDB does not hold (as a
robeing run without memory leaves it), then starts `robeing serve` with a
real ChromaDB and times until every one of them is memorized. While it runs,
an optional trickle of live DMs (`--rate`, signed `message.im` events to
POST /slack/events) measures how long a new exchange takes to reach
ChromaDB behind the catch-up (received → memorized, from Postgres) and how
long its reply takes (received → replied).

Usage: python3 bench/catch_up.py [--exchanges 20000] [--users 50] [--rate 2] [--min-seconds S]
Env: BENCH_BIN (default target/release/robeing), BENCH_ADMIN_URL
(default postgres://postgres:postgres@127.0.0.1:5432/postgres),
ROBEING_CHROMA_BIN (default ~/.cache/robeing/chroma-venv/bin/chroma).
"""
import argparse, hashlib, hmac, http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--exchanges", type=int, default=20000)
ap.add_argument("--users", type=int, default=50)
ap.add_argument("--rate", type=float, default=2.0, help="live DMs per second during the catch-up (0: none)")
ap.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
ap.add_argument("--min-seconds", type=float, default=0,
                help="send live DMs for at least this long (with --exchanges 0: a baseline without catch-up)")
args = ap.parse_args()

from benchlib import cpu_ms, free_port, psql, wait_http  # noqa: E402 (bench/ is on sys.path)

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.environ.get("BENCH_BIN", os.path.join(root, "target", "release", "robeing"))
admin = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
chroma_bin = os.environ.get("ROBEING_CHROMA_BIN", os.path.expanduser("~/.cache/robeing/chroma-venv/bin/chroma"))


work = tempfile.mkdtemp(prefix="robeing-catchup-")
db = f"robeing_catchup_{int(time.time())}"
psql(admin, f"CREATE DATABASE {db}")
db_url = admin.rsplit("/", 1)[0] + "/" + db
procs = []
secret = f"catchup-secret-{time.time()}"
port, slack_port, chroma_port = free_port(), free_port(), free_port()
procs.append(subprocess.Popen([sys.executable, os.path.join(root, "bench", "fake_slack.py"), str(slack_port)]))
subprocess.run([sys.executable, os.path.join(root, "deploy", "chroma-wal.py"), os.path.join(work, "chroma")], check=True)
chroma = subprocess.Popen([chroma_bin, "run", "--path", os.path.join(work, "chroma"), "--host", "127.0.0.1",
                           "--port", str(chroma_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
procs.append(chroma)
env = {
    "PATH": os.environ["PATH"], "DATABASE_URL": db_url, "ROBEING_LISTEN": f"127.0.0.1:{port}",
    "SLACK_BOT_TOKEN": "xoxb-catchup", "SLACK_SIGNING_SECRET": secret,
    "SLACK_API_URL": f"http://127.0.0.1:{slack_port}/api", "LOG_FORMAT": "json", "RUST_LOG": "info",
    "NEWS_FEEDS": "http://127.0.0.1:9/feed.xml", "BRIEFING_SCHEDULER": "off",
    "CHROMA_URL": f"http://127.0.0.1:{chroma_port}",
}
log_path = os.path.join(work, "robeing.log")
log = open(log_path, "w")


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
    wait_http(chroma_port, "/api/v2/heartbeat")
    subprocess.run([binary, "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, check=True)
    # The history: each user's exchanges a minute apart, replied, never memorized, no memory job (memory was off).
    psql(db_url, f"""
        INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING');
        INSERT INTO slack_users (user_id, team_id, real_name, tz, locale, dm_channel_id, profile_fetched_at)
        SELECT 'U0B' || lpad(u::text, 6, '0'), 'T0ROBEING', 'User ' || u, 'Asia/Seoul', 'ko-KR',
               'D0B' || lpad(u::text, 6, '0'), now()
        FROM generate_series(1, {args.users}) u;
        INSERT INTO exchanges (user_id, channel_id, user_ts, user_text, reply_text, reply_ts, status, received_at,
                               replied_at)
        SELECT 'U0B' || lpad((g % {args.users} + 1)::text, 6, '0'), 'D0B' || lpad((g % {args.users} + 1)::text, 6, '0'),
               (1700000000 + g)::text || '.000100',
               'note ' || g || ': the meeting with team ' || (g % 97) || ' moved to room ' || (g % 13),
               'Noted; I will remember that.', (1700000000 + g)::text || '.000200', 'replied',
               now() - make_interval(mins => {args.exchanges} - g), now() - make_interval(mins => {args.exchanges} - g)
        FROM generate_series(1, {args.exchanges}) g;
        ANALYZE exchanges;""")
    app = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    procs.append(app)
    started = time.time()
    wait_http(port, "/healthz")
    cpu0 = {"robeing": cpu_ms(app.pid, children=True), "chroma": cpu_ms(chroma.pid, children=True)}

    stop = threading.Event()
    sent = []

    def live():
        i = 0
        while not stop.is_set() and args.rate > 0:
            i += 1
            user = f"U0L{i % 10:06d}"
            body = json.dumps({
                "type": "event_callback", "team_id": "T0ROBEING", "api_app_id": "A0ROBEING",
                "event_id": f"EvLIVE{i:08d}", "event_time": int(time.time()),
                "event": {"type": "message", "channel_type": "im", "user": user, "channel": f"D0L{i % 10:06d}",
                          "text": f"live note {i}", "ts": f"{int(time.time())}.{i:06d}"}}).encode()
            ts = str(int(time.time()))
            sig = "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/slack/events", body, {"content-type": "application/json",
                                                          "x-slack-request-timestamp": ts, "x-slack-signature": sig})
                if c.getresponse().status == 200:
                    sent.append(i)
            except OSError:
                pass
            stop.wait(1 / args.rate)

    sender = threading.Thread(target=live, daemon=True)
    sender.start()
    progress = []
    while True:
        waiting = int(psql(db_url, "SELECT count(*) FROM exchanges WHERE user_id LIKE 'U0B%' AND memorized_at IS NULL"))
        progress.append((time.time() - started, waiting))
        if (waiting == 0 and time.time() - started >= args.min_seconds) or time.time() - started > args.timeout:
            break
        time.sleep(1)
    finished = time.time() - started
    stop.set()
    sender.join()
    cpu = {"robeing": cpu_ms(app.pid, children=True) - cpu0["robeing"], "chroma": cpu_ms(chroma.pid, children=True) - cpu0["chroma"]}
    time.sleep(3)  # the last live DMs reach memory
    lags = [float(x) for x in psql(db_url, """SELECT extract(epoch FROM memorized_at - received_at) FROM exchanges
                                               WHERE user_id LIKE 'U0L%' AND memorized_at IS NOT NULL""").split()]
    replies = sorted(float(x) for x in psql(db_url, """SELECT extract(epoch FROM replied_at - received_at) * 1000
                                                       FROM exchanges WHERE user_id LIKE 'U0L%' AND replied_at IS NOT NULL""").split())
    unmemorized_live = int(psql(db_url, "SELECT count(*) FROM exchanges WHERE user_id LIKE 'U0L%' AND memorized_at IS NULL"))
    lines = [json.loads(l) for l in open(log_path) if l.startswith("{")]
    said = [l for l in lines if "memory catch-up" in json.dumps(l)]
    left = progress[-1][1]
    result = {
        "exchanges": args.exchanges, "users": args.users, "live_rate": args.rate,
        "seconds_to_all_memorized": round(finished, 1) if left == 0 else None, "left": left,
        "records_per_s": round((args.exchanges - left) / finished, 1) if args.exchanges else None,
        "cpu_ms_per_record": {k: round(v / max(1, args.exchanges - left), 2) for k, v in cpu.items()},
        "live_dms": len(sent), "live_memorized": len(lags), "live_not_memorized": unmemorized_live,
        "live_memorize_lag_s": {"median": round(statistics.median(lags), 2),
                                "max": round(max(lags), 2)} if lags else None,
        "live_reply_ms": {"median": round(statistics.median(replies), 1),
                          "p99": round(replies[min(len(replies) - 1, int(len(replies) * 0.99))], 1)} if replies else None,
        "catch_up_log_lines": len(said),
    }
    print(json.dumps(result, indent=1))
finally:
    cleanup()
