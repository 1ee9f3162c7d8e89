"""Helpers the benchmark scripts share (bench/soak.py, bench/catch_up.py):
free loopback ports, psql, waiting for an HTTP server, and CPU time read
from /proc."""
import http.client, os, socket, subprocess, sys, time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    return subprocess.run(["psql", url, "-Atc", sql], check=True, capture_output=True, text=True).stdout.strip()


def wait_http(port, path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"nothing answered on port {port}{path}")


def proc_stat(pid):
    """(command name, the fields after it) of /proc/<pid>/stat; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, tail = f.read().rsplit(")", 1)
    except OSError:
        return None
    return head.split("(", 1)[1], tail.split()


def cpu_ms(pid, children=False, stat=None):
    """CPU time (user + system, ms) process `pid` has used so far; with
    `children`, also that of its children that ended (and were waited for)."""
    stat = stat or proc_stat(pid)
    if stat is None:
        return 0
    fields = stat[1]
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks * 1000 // os.sysconf("SC_CLK_TCK")
