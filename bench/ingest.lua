-- wrk script: each thread cycles through its share of pre-signed, distinct,
-- pre-formatted requests (see gen_events.py): BENCH_REQUESTS names the
-- files' common prefix, thread i reads BENCH_REQUESTS.i.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_REQUESTS") .. "." .. id, "rb"))
  reqs = {}
  while true do
    local len = f:read("*n")
    if not len then break end
    f:read(1) -- the newline after the length
    reqs[#reqs + 1] = f:read(len)
  end
  f:close()
  idx = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end
