#!/usr/bin/env python3
"""Writes N distinct, correctly signed Events API `message.im` requests as
complete HTTP/1.1 requests, each as its length in bytes, a newline, then
the request, dealt round-robin into one file per wrk thread (`OUT.0`,
`OUT.1`, …), for ingest.lua. Formatting the requests in wrk's Lua took
about 2 s per thread, and wrk sets its threads up one after another, so
the first thread was loading robeing for those 2 s before the next one
started (and wrk's requests/s counted them over a run 2 s shorter).
Generate right before a run (Slack's 5-minute window).

usage: gen_events.py SECRET PREFIX N OUT THREADS HOST"""
import hashlib, hmac, json, sys, time

secret, prefix, n, out = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3]), sys.argv[4]
threads, host = int(sys.argv[5]), sys.argv[6]
ts = str(int(time.time()))
files = [open("%s.%d" % (out, t), "wb") for t in range(threads)]
for i in range(n):
    user = "U0BENCH%03d" % (i % 50)
    body = json.dumps({
        "token": "unused", "team_id": "T0ROBEING", "api_app_id": "A0ROBEING", "type": "event_callback",
        "event_id": "Ev%s%08d" % (prefix, i), "event_time": int(ts),
        "event": {"type": "message", "channel": "D%s" % user[1:], "channel_type": "im", "user": user,
                  "text": "안녕하세요, benchmark message %d" % i, "ts": "%s.%06d" % (ts, i % 1000000),
                  "event_ts": "%s.%06d" % (ts, i % 1000000), "client_msg_id": "%08x-bench" % i},
        "authorizations": [{"team_id": "T0ROBEING", "user_id": "U0BOT0001", "is_bot": True}],
    }, ensure_ascii=False, separators=(",", ":")).encode()
    sig = "v0=" + hmac.new(secret, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    head = ("POST /slack/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "X-Slack-Request-Timestamp: %s\r\nX-Slack-Signature: %s\r\nContent-Length: %d\r\n\r\n"
            % (host, ts, sig, len(body)))
    raw = head.encode() + body
    files[i % threads].write(b"%d\n" % len(raw) + raw)
for f in files:
    f.close()
