#!/usr/bin/env python3
"""Writes N distinct, correctly signed Events API `message.im` requests, one
per line: `timestamp <TAB> X-Slack-Signature <TAB> body`. Used by
ingest.lua; generate right before a run (Slack's 5-minute window)."""
import hashlib, hmac, json, sys, time

secret, prefix, n, out = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ts = str(int(time.time()))
with open(out, "w") as f:
    for i in range(n):
        user = "U0BENCH%03d" % (i % 50)
        body = json.dumps({
            "token": "unused", "team_id": "T0ROBEING", "api_app_id": "A0ROBEING", "type": "event_callback",
            "event_id": "Ev%s%08d" % (prefix, i), "event_time": int(ts),
            "event": {"type": "message", "channel": "D%s" % user[1:], "channel_type": "im", "user": user,
                      "text": "안녕하세요, benchmark message %d" % i, "ts": "%s.%06d" % (ts, i % 1000000),
                      "event_ts": "%s.%06d" % (ts, i % 1000000), "client_msg_id": "%08x-bench" % i},
            "authorizations": [{"team_id": "T0ROBEING", "user_id": "U0BOT0001", "is_bot": True}],
        }, ensure_ascii=False, separators=(",", ":"))
        raw = body.encode()
        sig = "v0=" + hmac.new(secret, b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
        f.write("%s\t%s\t%s\n" % (ts, sig, body))
