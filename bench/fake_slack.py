#!/usr/bin/env python3
"""A minimal fake Slack Web API for the benchmark: auth.test and users.info
answer ok, everything else `{"ok": true}`. Workers call it once per user.
It is also an instant OpenAI-compatible LLM: `POST …/chat/completions`
answers one short completion (bench/soak.py --llm points LLM_BASE_URL here)."""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        m = self.path.split("?")[0].rsplit("/", 1)[-1]
        if m == "completions":
            body = {"id": "cmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "Noted; I will remember that."}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        elif m == "auth.test":
            body = {"ok": True, "team_id": "T0ROBEING", "user_id": "U0BOT0001", "bot_id": "B0BOT0001", "team": "bench", "user": "robeing", "url": "https://x/"}
        elif m == "users.info":
            body = {"ok": True, "user": {"id": "U0", "team_id": "T0ROBEING", "real_name": "Bench", "tz": "Asia/Seoul", "locale": "ko-KR", "profile": {"real_name": "Bench", "display_name": "bench"}}}
        else:
            body = {"ok": True, "ts": "1.1", "channel": {"id": "D0"}}
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
    do_GET = do_POST = answer
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
