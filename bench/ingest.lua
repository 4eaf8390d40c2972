-- wrk script for bench/ingest.py: one file for the three phases.
--
--   wrk ... -s bench/ingest.lua http://127.0.0.1:PORT -- MODE BODY_FILE EVENTS_PER_REQUEST AUTH [UNIQUE_IDS RUN_TAG]
--
--   MODE                floor (GET /healthz) | single (POST /v1/track) | batch (POST /v1/batch)
--   BODY_FILE           the JSON body to POST (ignored for floor; "-" for none)
--   EVENTS_PER_REQUEST  events in one body (1 for single, 100 for batch)
--   AUTH                the Authorization header value ("Basic d2tfYmVuY2g6")
--   UNIQUE_IDS          "1": replace every @MID@ in the body with a new random messageId shaped like the
--                       uuid4 the Segment and RudderStack SDKs send (costs client CPU); otherwise the body
--                       is sent as is (no messageId: the hub assigns one, so nothing dedupes) from one
--                       pre-formatted request.
--   RUN_TAG             seeds the random messageIds differently for every run and phase.
--
-- Every thread counts what it sent, the HTTP statuses and the events the hub said it accepted;
-- done() prints one line "BENCH_RESULT {json}" that bench/ingest.py parses.

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   mode = args[1]
   per_request = tonumber(args[3]) or 1
   unique = args[5] == "1"
   sent, ok, accepted_events, duplicates, rejected_events = 0, 0, 0, 0, 0
   statuses = {}
   seq = 0
   if mode == "floor" then
      prepared = wrk.format("GET", "/healthz")
      return
   end
   local fh = assert(io.open(args[2], "rb"))
   template = fh:read("*a")
   fh:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = args[4]
   path = mode == "batch" and "/v1/batch" or "/v1/track"
   if not unique then
      prepared = wrk.format("POST", path, nil, template)
   end
   math.randomseed((tonumber(args[6] or "0", 16) or 0) % 1000003 * 1000 + tid)
end

local function hex(digits)
   local parts = {}
   for _ = 1, digits, 4 do
      table.insert(parts, string.format("%04x", math.random(0, 65535)))
   end
   return table.concat(parts):sub(1, digits)
end

-- Random, so the hub's messageId indexes see keys in no order, as with real SDKs; the thread and a counter
-- in the last group keep them unique within a run.
local function message_id()
   seq = seq + 1
   return string.format("%s-%s-4%s-a%s-%02x%010x", hex(8), hex(4), hex(3), hex(3), tid % 256, seq)
end

function request()
   sent = sent + 1
   if prepared then
      return prepared
   end
   local body = template:gsub("@MID@", message_id)
   return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status ~= 200 then
      return
   end
   ok = ok + 1
   if mode == "floor" then
      return
   end
   -- {"success":true} | {"success":true,"duplicate":true} | batch: "duplicates":N, "accepted":N, "rejected":[..]
   if mode == "single" then
      if body:find('"duplicate":true', 1, true) then
         duplicates = duplicates + 1
      else
         accepted_events = accepted_events + 1
      end
      return
   end
   local dup = tonumber(body:match('"duplicates":(%d+)')) or 0
   local acc = tonumber(body:match('"accepted":(%d+)'))
   duplicates = duplicates + dup
   if acc then
      accepted_events = accepted_events + acc
      rejected_events = rejected_events + (per_request - acc - dup)
   else
      accepted_events = accepted_events + per_request - dup
   end
end

local function json_status_map(map)
   local parts = {}
   for status, n in pairs(map) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local totals = {sent = 0, ok = 0, accepted_events = 0, duplicates = 0, rejected_events = 0}
   local all_statuses = {}
   for _, thread in ipairs(threads) do
      for key, _ in pairs(totals) do
         totals[key] = totals[key] + (thread:get(key) or 0)
      end
      local st = thread:get("statuses") or {}
      for status, n in pairs(st) do
         all_statuses[status] = (all_statuses[status] or 0) + n
      end
   end
   local mode = threads[1] and threads[1]:get("mode") or "?"
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"mode":"%s","duration_us":%d,"requests":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},'
         .. '"sent":%d,"ok":%d,"accepted_events":%d,"duplicates":%d,"rejected_events":%d,"statuses":%s}\n',
      mode, summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      totals.sent, totals.ok, totals.accepted_events, totals.duplicates, totals.rejected_events,
      json_status_map(all_statuses)))
end
