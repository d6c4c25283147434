-- One heroes_api load scenario for wrk, chosen and sized by environment variables that
-- bench/load.py sets: BENCH_SCENARIO (point, page, create, patch, mixed), BENCH_MAX_ID
-- (ids 1..N exist), BENCH_MIN_OFFSET / BENCH_MAX_OFFSET (page scenario's random offset).
-- done() prints one line "BENCH_JSON {...}" that load.py parses.

local scenario = os.getenv("BENCH_SCENARIO") or "point"
local max_id = tonumber(os.getenv("BENCH_MAX_ID") or "1000")
local min_offset = tonumber(os.getenv("BENCH_MIN_OFFSET") or "0")
local max_offset = tonumber(os.getenv("BENCH_MAX_OFFSET") or "900")
local json = { ["Content-Type"] = "application/json" }

local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

local created = 0
function init(args)
  non2xx = 0
  math.randomseed(os.time() * 1000 + thread_id)
end

local function point()
  return wrk.format("GET", "/heroes/" .. math.random(1, max_id))
end

local function page()
  return wrk.format("GET", "/heroes/?offset=" .. math.random(min_offset, max_offset) .. "&limit=100")
end

local function create()
  created = created + 1
  local body = string.format('{"name":"Bench %d-%d","secret_name":"Secret %d","age":%d}',
    thread_id, created, created, created % 100)
  return wrk.format("POST", "/heroes/", json, body)
end

local function patch()
  local body = '{"age":' .. math.random(0, 120) .. '}'
  return wrk.format("PATCH", "/heroes/" .. math.random(1, max_id), json, body)
end

local function mixed()
  local roll = math.random(1, 10)
  if roll <= 8 then return point() end
  if roll == 9 then return create() end
  return patch()
end

request = ({ point = point, page = page, create = create, patch = patch, mixed = mixed })[scenario]
if request == nil then error("unknown BENCH_SCENARIO " .. scenario) end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, bad, e.connect, e.read, e.write, e.timeout))
end
