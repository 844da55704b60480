-- wrk script: random orders of the benchmark's data set, like ids.lua, and
-- a count of the answers by status and of 503s without Retry-After,
-- printed at the end. Each thread counts its own; done() adds them up.
local path = os.getenv("BENCH_PATH")
local n = tonumber(os.getenv("BENCH_N"))
local prefix = os.getenv("BENCH_PREFIX") or "bench-"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  noretry = 0
end

function request()
  local id = string.format("%s%08d", prefix, math.random(1, n))
  return wrk.format("GET", string.format(path, id))
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 503 and headers["Retry-After"] == nil then
    noretry = noretry + 1
  end
end

function done(summary, latency, requests)
  local total, missing = {}, 0
  for _, t in ipairs(threads) do
    for status, c in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + c
    end
    missing = missing + t:get("noretry")
  end
  for status, c in pairs(total) do
    io.write(string.format("status %d: %d\n", status, c))
  end
  io.write(string.format("503 without Retry-After: %d\n", missing))
end
