-- One heroes_api load scenario for wrk, chosen and sized by environment variables that
-- bench/servers.py's run_wrk sets: BENCH_SCENARIO (point, page, create, create_keyed, patch,
-- mixed, page_keyset, by_name, age_range), BENCH_MAX_ID (ids 1..N exist), BENCH_MIN_OFFSET /
-- BENCH_MAX_OFFSET (page scenario's random offset), BENCH_AGE_MODULUS (hero n's age is
-- n % modulus; age_range needs it), BENCH_AUTHORIZATION (sent as every request's Authorization
-- header: API keys). done() prints one line "BENCH_JSON {...}" that run_wrk parses.

local scenario = os.getenv("BENCH_SCENARIO") or "point"
local max_id = tonumber(os.getenv("BENCH_MAX_ID") or "1000")
local min_offset = tonumber(os.getenv("BENCH_MIN_OFFSET") or "0")
local max_offset = tonumber(os.getenv("BENCH_MAX_OFFSET") or "900")
local age_modulus = tonumber(os.getenv("BENCH_AGE_MODULUS") or "0")
local json = { ["Content-Type"] = "application/json" }
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization then
  wrk.headers["Authorization"] = authorization
  json["Authorization"] = authorization
end

local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

local created = 0
function init(args)
  non2xx = 0
  wrong = 0
  math.randomseed(os.time() * 1000 + thread_id)
end

local function point()
  return wrk.format("GET", "/heroes/" .. math.random(1, max_id))
end

local function page()
  return wrk.format("GET", "/heroes/?offset=" .. math.random(min_offset, max_offset) .. "&limit=100")
end

local function create_body()
  created = created + 1
  return string.format('{"name":"Bench %d-%d","secret_name":"Secret %d","age":%d}',
    thread_id, created, created, created % 100)
end

local function create()
  return wrk.format("POST", "/heroes/", json, create_body())
end

-- A create sent with an Idempotency-Key of its own (issue 17): what the key costs.
local keyed, key_prefix = {}, nil
local function create_keyed()
  if key_prefix == nil then
    key_prefix = string.format("%d-%d-%d", os.time(), thread_id, math.random(1, 1e9))
    for name, value in pairs(json) do keyed[name] = value end
  end
  local body = create_body()
  keyed["Idempotency-Key"] = key_prefix .. "-" .. created
  return wrk.format("POST", "/heroes/", keyed, body)
end

local function patch()
  local body = '{"age":' .. math.random(0, 120) .. '}'
  return wrk.format("PATCH", "/heroes/" .. math.random(1, max_id), json, body)
end

-- Keyset paging at a random depth: a full page of 100 wherever it starts.
local function page_keyset()
  local after_id = math.random(0, math.max(max_id - 100, 0))
  return wrk.format("GET", "/heroes/?after_id=" .. after_id .. "&limit=100")
end

-- Names are "Hero %07d" (bench/databases.py), one hero each.
local function by_name()
  return wrk.format("GET", string.format("/heroes/?name=Hero%%20%07d", math.random(1, max_id)))
end

-- One age, held by max_id / age_modulus heroes (100 of 1,000,000); the age of a random hero,
-- so at least one matches at any size.
local function age_range()
  local age = math.random(1, max_id) % age_modulus
  return wrk.format("GET", "/heroes/?min_age=" .. age .. "&max_age=" .. age .. "&limit=100")
end

local function mixed()
  local roll = math.random(1, 10)
  if roll <= 8 then return point() end
  if roll == 9 then return create() end
  return patch()
end

request = ({
  point = point, page = page, create = create, patch = patch, mixed = mixed,
  page_keyset = page_keyset, by_name = by_name, age_range = age_range,
  create_keyed = create_keyed,
})[scenario]
if request == nil then error("unknown BENCH_SCENARIO " .. scenario) end
if scenario == "age_range" and age_modulus < 1 then error("age_range needs BENCH_AGE_MODULUS") end

-- A 2xx answer to a filtered scenario must hold what it asked for (a server that ignored the
-- filter would otherwise be measured as a fast one): counted as "wrong".
local function heroes_in(body)
  local n = 0
  for _ in string.gmatch(body, '"id":') do n = n + 1 end
  return n
end

local function one_age(body)
  local first, n = nil, 0
  for age in string.gmatch(body, '"age":(%-?%d+)') do
    n = n + 1
    if first == nil then first = age elseif age ~= first then return false end
  end
  return n >= 1
end

local check = ({
  page_keyset = function(body) return heroes_in(body) == 100 or max_id < 100 end,
  by_name = function(body) return heroes_in(body) == 1 end,
  age_range = one_age,
})[scenario]

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif check and not check(body) then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local bad, wrong_total = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    wrong_total = wrong_total + (thread:get("wrong") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"non2xx":%d,"wrong":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, bad, wrong_total, e.connect, e.read, e.write,
    e.timeout))
end
