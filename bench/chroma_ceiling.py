#!/usr/bin/env python3
"""ChromaDB's own ceiling on this machine, with nothing of robeing in the way.

Starts a real ChromaDB server (`chroma run`, from ROBEING_CHROMA_BIN or
~/.cache/robeing/chroma-venv/bin/chroma) on a fresh directory, fills one
collection with --records records shaped like robeing's (384-dimensional unit
vectors, a short document, the same five metadata keys, --users users), then
measures over the v2 HTTP API with keep-alive connections (stdlib
http.client; request bodies are built before the clock starts, so the client
costs as little as it can):

- upserts of fresh records in batches of 1, 16, 64 and 256: records/s and
  ChromaDB CPU per record;
- `query` as robeing's recall sends it (one embedding, n_results=--k, a
  `user_id` filter, documents + metadatas + distances), sequential on one
  connection and from --concurrency connections at once: queries/s and
  ChromaDB CPU per query.

CPU is the server process's utime + stime from /proc (all its threads), so it
is ChromaDB's own cost whatever else runs on the machine.

With --per-user, each user's records go to a collection of their own (as
robeing files them since session 10) and queries carry no filter; an upsert
batch of mixed users becomes one call per user in it.

ChromaDB's SQLite is put in WAL mode before the server starts, as
docs/operations.md runs it; --journal delete keeps ChromaDB's default
rollback journal.

Usage: python3 bench/chroma_ceiling.py [--records 4000] [--queries 2000]
       [--k 5] [--users 50] [--concurrency 4] [--per-user] [--journal wal|delete]
       [--mixed SECS [--mixed-batch 4]] [--growth RECORDS_PER_COLLECTION]

--growth answers "does a collection slow down as it grows?": it writes one
record per call, users in turn (as robeing's memory writer does at a steady
rate), until each collection holds that many, and prints each window's
records/s, write p50/p99, ChromaDB CPU per record and the records per
collection at the window's end, then the bytes ChromaDB wrote to disk per
record over the phase. --queries 0 skips the query phases.
"""
import argparse, http.client, json, math, os, random, shutil, socket, subprocess, sys, tempfile, threading, time, uuid

ap = argparse.ArgumentParser()
ap.add_argument("--records", type=int, default=4000, help="records in the collection before the queries")
ap.add_argument("--queries", type=int, default=2000, help="queries per query phase")
ap.add_argument("--k", type=int, default=5, help="n_results (robeing's MEMORY_TOP_K)")
ap.add_argument("--users", type=int, default=50)
ap.add_argument("--concurrency", type=int, default=4, help="connections in the concurrent query phase")
ap.add_argument("--dim", type=int, default=384)
ap.add_argument("--settle", type=float, default=0, help="seconds of rest between the writes and the queries")
ap.add_argument("--include", default="documents,metadatas,distances", help="what queries ask back")
ap.add_argument("--no-where", action="store_true", help="query without the user_id filter (for comparison)")
ap.add_argument("--per-user", action="store_true", help="one collection per user (no filter in queries)")
ap.add_argument("--hnsw", default="", help="collection HNSW settings, e.g. batch_size=1000,sync_threshold=10000")
ap.add_argument("--journal", choices=["wal", "delete"], default="wal",
                help="ChromaDB's SQLite journal: wal (as docs/operations.md runs it) or delete (ChromaDB's default)")
ap.add_argument("--mixed", type=float, default=0,
                help="seconds of a last phase where 2 writers upsert while --concurrency readers query")
ap.add_argument("--mixed-batch", type=int, default=4, help="records per write in the mixed phase (one user each)")
ap.add_argument("--upserts", default="1:200,16:800,64:1280,256:2560", help="batch:records phases after the fill")
ap.add_argument("--growth", type=int, default=0,
                help="grow every collection to this many records by one-record upserts, users in turn, as robeing's "
                     "memory writer sends them at a steady rate; reported per --growth-window records")
ap.add_argument("--growth-window", type=int, default=5000, help="records per reported window of the growth phase")
ap.add_argument("--growth-writers", type=int, default=4, help="concurrent writes in the growth phase (robeing: 4)")
args = ap.parse_args()

TICK = os.sysconf("SC_CLK_TCK")
bin_path = os.environ.get("ROBEING_CHROMA_BIN") or os.path.expanduser("~/.cache/robeing/chroma-venv/bin/chroma")
if not os.access(bin_path, os.X_OK):
    sys.exit(f"no chroma at {bin_path}: set ROBEING_CHROMA_BIN")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_secs(pid):
    """utime + stime of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def written_bytes(pid):
    """Bytes the process (all its threads) caused to be written to disk."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_threads(threads, pid):
    """Starts the threads, waits for all of them; (wall seconds, server CPU seconds)."""
    cpu0, t0 = cpu_secs(pid), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, cpu_secs(pid) - cpu0


def percentile_ms(sorted_secs, q):
    return sorted_secs[round((len(sorted_secs) - 1) * q)] * 1000


rng = random.Random(7)


def unit_vector():
    v = [rng.gauss(0, 1) for _ in range(args.dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [round(x / n, 6) for x in v]


def user_of(i):
    return f"U0BENCH{i % args.users:03}"


def record(i):
    user = user_of(i)
    received = 1_764_000_000 + i
    return (
        str(uuid.UUID(int=rng.getrandbits(128))),
        unit_vector(),
        f"user: benchmark message {i}: what should I remember about the weather?\nrobeing: Noted, message {i}.",
        {
            "user_id": user,
            "channel_id": f"D0B{i:08}",
            "ts": f"{received}.000100",
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(received)),
            "received_at_unix": received,
        },
    )


def upsert_body(recs):
    return json.dumps({
        "ids": [r[0] for r in recs],
        "embeddings": [r[1] for r in recs],
        "documents": [r[2] for r in recs],
        "metadatas": [r[3] for r in recs],
    }).encode()


class Conn:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path, body):
        self.c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
        return data


port = free_port()
data_dir = tempfile.mkdtemp(prefix="chroma-ceiling-")
if args.journal == "wal":
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "chroma-wal.py"),
                    os.path.join(data_dir, "data")], check=True, stdout=subprocess.DEVNULL)
server = subprocess.Popen(
    [bin_path, "run", "--path", os.path.join(data_dir, "data"), "--host", "127.0.0.1", "--port", str(port)],
    env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
try:
    deadline = time.time() + 60
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v2/heartbeat")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("ChromaDB did not start within 60 s")
        time.sleep(0.2)

    conn = Conn(port)
    base = "/api/v2/tenants/default_tenant/databases/default_database/collections"
    meta = {"embedder": "bench", "dimension": args.dim, "created_by": "robeing"}

    def collection(name):
        """Gets or creates the collection; ChromaDB's description of it."""
        request = {"name": name, "get_or_create": True, "metadata": meta}
        if args.hnsw:
            hnsw = {k: int(v) for k, v in (kv.split("=") for kv in args.hnsw.split(","))}
            request["configuration"] = {"hnsw": hnsw}
        return json.loads(conn.post(base, json.dumps(request).encode()))

    def collection_id(name):
        return collection(name)["id"]

    if args.per_user:
        ids = {user_of(u): collection_id(f"ceiling_{user_of(u)}") for u in range(args.users)}
    else:
        shared = collection_id("ceiling")
        ids = {user_of(u): shared for u in range(args.users)}
    upsert_path = lambda user: f"{base}/{ids[user]}/upsert"
    query_path = lambda user: f"{base}/{ids[user]}/query"
    print(f"ChromaDB pid {server.pid} on port {port}; load {load()}")

    # Fill the collection (batches of 256), timed as a phase of its own.
    made = 0

    def upsert_phase(batch, total):
        global made
        if total <= 0:
            return
        bodies = []  # (path, body): one call per collection a batch touches
        for start in range(0, total, batch):
            recs = [record(made + start + j) for j in range(min(batch, total - start))]
            by_path = {}
            for r in recs:
                by_path.setdefault(upsert_path(r[3]["user_id"]), []).append(r)
            bodies.extend((path, upsert_body(rs)) for path, rs in by_path.items())
        made += total
        cpu0, t0 = cpu_secs(server.pid), time.perf_counter()
        for path, b in bodies:
            conn.post(path, b)
        wall, cpu = time.perf_counter() - t0, cpu_secs(server.pid) - cpu0
        print(
            f"CEILING upsert per_user={args.per_user} batch={batch:>3} records={total:>5} secs={wall:6.2f} rate={total / wall:7.0f} records/s "
            f"calls={len(bodies) / wall:6.1f}/s chroma_cpu_per_record={cpu / total * 1000:6.2f} ms "
            f"chroma_cpu_per_call={cpu / len(bodies) * 1000:6.2f} ms load=[{load()}]"
        )

    upsert_phase(256, args.records)
    for phase in filter(None, args.upserts.split(",")):
        batch, total = (int(x) for x in phase.split(":"))
        upsert_phase(batch, total)

    def growth_phase(per_collection):
        global made
        first = made
        target = per_collection * args.users if args.per_user else per_collection
        print(f"GROWTH configuration: {collection(f'ceiling_{user_of(0)}' if args.per_user else 'ceiling').get('configuration_json')}")
        lock = threading.Lock()
        nxt = [first]
        done = []  # (finished at, seconds)
        cpu_samples = []  # (at, server CPU seconds)
        stop = threading.Event()

        def writer():
            c = Conn(port)
            while True:
                with lock:
                    i = nxt[0]
                    if i >= target:
                        return
                    nxt[0] += 1
                b = upsert_body([record(i)])
                t = time.perf_counter()
                c.post(upsert_path(user_of(i)), b)
                now = time.perf_counter()
                with lock:
                    done.append((now, now - t))

        def sampler():
            while not stop.is_set():
                cpu_samples.append((time.perf_counter(), cpu_secs(server.pid)))
                stop.wait(0.5)

        s = threading.Thread(target=sampler)
        s.start()
        disk0 = written_bytes(server.pid)
        run_threads([threading.Thread(target=writer) for _ in range(args.growth_writers)], server.pid)
        stop.set()
        s.join()
        made = target
        print(f"GROWTH disk written: {(written_bytes(server.pid) - disk0) / max(1, len(done)) / 1024:.1f} KiB per record")

        def cpu_at(t):  # server CPU seconds at time t, from the nearest sample before it
            before = [c for at, c in cpu_samples if at <= t]
            return before[-1] if before else cpu_samples[0][1]

        w = args.growth_window
        for start in range(0, len(done) - 1, w):
            win = done[start:start + w]
            t0 = done[start - 1][0] if start else win[0][0] - win[0][1]
            wall = win[-1][0] - t0
            lat = sorted(x for _, x in win)
            cpu = cpu_at(win[-1][0]) - cpu_at(t0)
            print(
                f"GROWTH per_user={args.per_user} hnsw={args.hnsw or 'default'} journal={args.journal} "
                f"records_per_collection={(first + start + len(win)) // (args.users if args.per_user else 1):>5} "
                f"rate={len(win) / wall:6.0f} records/s write_p50={percentile_ms(lat, 0.5):6.1f}ms "
                f"write_p99={percentile_ms(lat, 0.99):7.1f}ms write_max={lat[-1] * 1000:7.0f}ms "
                f"chroma_cpu_per_record={cpu / len(win) * 1000:5.2f} ms load=[{load()}]"
            )

    if args.growth:
        growth_phase(args.growth)
    total_records = made
    if args.queries <= 0:
        sys.exit(0)

    def query_body(i):
        body = {
            "query_embeddings": [unit_vector()],
            "n_results": args.k,
            "include": [x for x in args.include.split(",") if x],
        }
        if not args.no_where and not args.per_user:
            body["where"] = {"user_id": user_of(i)}
        return query_path(user_of(i)), json.dumps(body).encode()

    def query_phase(concurrency):
        bodies = [query_body(i) for i in range(args.queries)]
        per = [bodies[i::concurrency] for i in range(concurrency)]
        lat = [[] for _ in range(concurrency)]
        errors = []

        def run(i):
            c = Conn(port)
            try:
                for path, b in per[i]:
                    t = time.perf_counter()
                    c.post(path, b)
                    lat[i].append(time.perf_counter() - t)
            except Exception as e:  # reported below
                errors.append(e)

        wall, cpu = run_threads([threading.Thread(target=run, args=(i,)) for i in range(concurrency)], server.pid)
        if errors:
            sys.exit(f"query failed: {errors[0]}")
        all_lat = sorted(x for l in lat for x in l)
        p = lambda q: percentile_ms(all_lat, q)
        print(
            f"CEILING query per_user={args.per_user} k={args.k} where={not (args.no_where or args.per_user)} include={args.include} concurrency={concurrency} records={total_records} queries={len(all_lat)} "
            f"secs={wall:6.2f} rate={len(all_lat) / wall:6.0f}/s p50={p(0.5):5.1f}ms p99={p(0.99):5.1f}ms "
            f"chroma_cpu_per_query={cpu / len(all_lat) * 1000:5.2f} ms load=[{load()}]"
        )

    time.sleep(args.settle)
    # Warm up (first queries load the index), then measure.
    for i in range(max(50, args.users)):
        conn.post(*query_body(i))
    query_phase(1)
    query_phase(args.concurrency)

    # Reads while ChromaDB writes, as robeing's recalls meet its memory
    # writes: each write is one user's --mixed-batch fresh records, each
    # read a recall from a random user's collection. Bodies are built on
    # the fly (the client's CPU shares the machine alike in every run).
    if args.mixed > 0:
        stop_at = time.time() + args.mixed
        written, lat, errors = [0], [], []

        def writer():
            c = Conn(port)
            while time.time() < stop_at:
                user = user_of(rng.randrange(args.users))
                recs = [record(rng.randrange(1 << 30)) for _ in range(args.mixed_batch)]
                for r in recs:
                    r[3]["user_id"] = user
                c.post(upsert_path(user), upsert_body(recs))
                written[0] += len(recs)

        def reader():
            c = Conn(port)
            while time.time() < stop_at:
                path, b = query_body(rng.randrange(args.users))
                t = time.perf_counter()
                try:
                    c.post(path, b)
                    lat.append(time.perf_counter() - t)
                except Exception as e:  # counted and reported below
                    errors.append(str(e)[:200])
                    c = Conn(port)

        threads = [threading.Thread(target=writer) for _ in range(2)]
        threads += [threading.Thread(target=reader) for _ in range(args.concurrency)]
        wall, cpu = run_threads(threads, server.pid)
        lat.sort()
        p = lambda q: percentile_ms(lat, q)
        print(
            f"CEILING mixed journal={args.journal} per_user={args.per_user} writers=2 batch={args.mixed_batch} readers={args.concurrency} "
            f"secs={wall:6.2f} writes={written[0] / wall:6.0f} records/s queries={len(lat) / wall:6.0f}/s "
            f"query_p50={p(0.5):5.1f}ms query_p99={p(0.99):5.1f}ms errors={len(errors)} "
            f"chroma_cpu_per_s={cpu / wall * 1000:5.0f} ms load=[{load()}]"
        )
        for e in sorted(set(errors)):
            print(f"  error: {e}")
finally:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(data_dir, ignore_errors=True)
