-- wrk script: each request asks for a random order of the benchmark's
-- data set, whose ids are PREFIX00000001 .. PREFIXnnnnnnnn. Set the path
-- template and the count in the environment:
--   BENCH_PATH=/api/models/cache/%s BENCH_N=100000 wrk -s bench/ids.lua ...
-- "%s" is replaced by an id. BENCH_PREFIX defaults to "bench-".
local path = os.getenv("BENCH_PATH")
local n = tonumber(os.getenv("BENCH_N"))
local prefix = os.getenv("BENCH_PREFIX") or "bench-"

function setup(thread)
  thread:set("seed", math.random(1, 1e9))
end

function init(args)
  math.randomseed(seed)
end

function request()
  local id = string.format("%s%08d", prefix, math.random(1, n))
  return wrk.format("GET", string.format(path, id))
end
