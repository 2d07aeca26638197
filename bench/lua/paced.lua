-- Protected GETs at a bounded rate, for bench/soak.py. Arguments (after `--`): FILE PAUSE_MS.
-- Each connection sends GET /dashboard and GET /me in turn with "Authorization: Bearer" (second
-- column of FILE), waiting PAUSE_MS before each request: at most connections / PAUSE_MS a
-- millisecond. done() prints "BENCH_JSON {...}" as requests.lua does.

local reqs = {}
local index = 0
local pause = 0

function init(args)
  pause = tonumber(args[2])
  for line in io.lines(args[1]) do
    local token = line:match("\t(.+)$")
    if token then
      local headers = { ["Authorization"] = "Bearer " .. token }
      table.insert(reqs, wrk.format("GET", "/dashboard", headers))
      table.insert(reqs, wrk.format("GET", "/me", headers))
    end
  end
end

function delay()
  return pause
end

function request()
  index = index + 1
  if index > #reqs then index = 1 end
  return reqs[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
