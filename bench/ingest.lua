-- wrk script: each thread cycles through its share of pre-signed distinct
-- requests (see gen_events.py). BENCH_REQUESTS names the file, BENCH_THREADS
-- must equal wrk's -t.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local n = tonumber(os.getenv("BENCH_THREADS") or "2")
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if i % n == id then
      local ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/slack/events", {
        ["Content-Type"] = "application/json",
        ["X-Slack-Request-Timestamp"] = ts,
        ["X-Slack-Signature"] = sig,
      }, body)
    end
    i = i + 1
  end
  idx = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end
