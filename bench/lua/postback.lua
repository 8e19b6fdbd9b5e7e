-- Postback load for wrk: POST /v1/postback with a JSON lead.
--
-- Script arguments (after `--` on the wrk command line):
--   1. API key, sent as `Authorization: Bearer <key>`
--   2. run nonce, making the emails of one run unique across runs
--   3. mode: "new" (a new email on every request) or "matched" (one of a fixed pool)
--   4. pool size for "matched" (emails m0..m<pool-1>@bench.example)
--
-- Every thread counts the HTTP status codes it sees; done() prints one line
-- "WRKJSON {...}" with the totals, the latency percentiles and wrk's error counters.

local threads = {}

-- Set per thread by setup() through thread:set, so these stay globals.
thread_id = 0
statuses = {}

local counter = 0
local nonce = ""
local mode = "new"
local pool = 1000

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_id", #threads)
end

function init(args)
   local key = args[1] or ""
   nonce = args[2] or tostring(os.time())
   mode = args[3] or "new"
   pool = tonumber(args[4] or "1000")
   wrk.method = "POST"
   wrk.path = "/v1/postback"
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.headers["Content-Type"] = "application/json"
   math.randomseed(os.time() * 1000 + thread_id)
end

local function new_body()
   local email = string.format("u%s-%d-%d-%d@bench.example",
      nonce, thread_id, counter, math.random(0, 999999))
   return string.format(
      '{"email":"%s","first_name":"Ada","last_name":"Lovelace","source":"bench",' ..
      '"campaign":"c1","utm_source":"google","form_completion_percent":50}', email)
end

local function matched_body()
   local email = string.format("m%d@bench.example", math.random(0, pool - 1))
   return string.format(
      '{"email":"%s","first_name":"Ada","last_name":"Lovelace","source":"bench",' ..
      '"campaign":"c1","utm_source":"google","form_completion_percent":%d,' ..
      '"custom_data":{"visit":%d,"thread":%d}}',
      email, counter % 101, counter, thread_id)
end

function request()
   counter = counter + 1
   local body
   if mode == "matched" then
      body = matched_body()
   else
      body = new_body()
   end
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

local function status_json(counts)
   local parts = {}
   for code, n in pairs(counts) do
      parts[#parts + 1] = string.format('"%d":%d', code, n)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for code, n in pairs(thread:get("statuses")) do
         counts[code] = (counts[code] or 0) + n
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":%s}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, status_json(counts)))
end
