-- wrk script: create/delete churn at a constant number of orders. Each
-- thread (one connection each, so its requests run in order) creates an
-- order with a new id and, once it has created BENCH_KEEP of them, deletes
-- its oldest one, so the cache's size stays put while records come and go.
--   BENCH_ORDER=file-with-@UID@ BENCH_KEEP=100 wrk -t2 -c2 -s bench/churn.lua ...
local template = io.open(os.getenv("BENCH_ORDER")):read("*a")
local keep = tonumber(os.getenv("BENCH_KEEP") or "100")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  created = {}
  first, next = 1, 1
  deleting = false
end

function request()
  if deleting then
    local id = created[first]
    created[first] = nil
    first = first + 1
    deleting = false
    return wrk.format("DELETE", "/api/models/" .. id)
  end
  local id = string.format("churn-%d-%09d", tid, next)
  created[next] = id
  next = next + 1
  deleting = next - first > keep
  local body = template:gsub("@UID@", id)
  return wrk.format("POST", "/api/models", { ["Content-Type"] = "application/json" }, body)
end
