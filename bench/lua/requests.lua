-- One wrk script for every scenario. Arguments (after `--`):
--   mode nthreads [file] [extra]
--   plain    N PATH            GET PATH
--   bearer   N FILE PATH       GET PATH with "Authorization: Bearer" (second column of FILE)
--   cookie   N FILE PATH       GET PATH with the jwt_token cookie (one token a line)
--   refresh  N FILE            POST /token/refresh, each refresh token of FILE used once
--   login    N FILE PASSWORD   POST /login as the users of FILE (first column)
-- done() prints one line "BENCH_JSON {...}" that bench/run.py reads.

local counter = 0
local reqs = {}
local index = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then table.insert(out, line) end
  end
  return out
end

local function mine(all, nthreads)
  -- Every thread takes its own slice, so no token is used by two threads.
  local out = {}
  for i, value in ipairs(all) do
    if (i - 1) % nthreads == id then table.insert(out, value) end
  end
  return out
end

function init(args)
  local mode, nthreads = args[1], tonumber(args[2])
  if mode == "plain" then
    reqs = { wrk.format("GET", args[3]) }
  elseif mode == "bearer" then
    for _, line in ipairs(mine(lines(args[3]), nthreads)) do
      local token = line:match("\t(.+)$")
      table.insert(reqs, wrk.format("GET", args[4], { ["Authorization"] = "Bearer " .. token }))
    end
  elseif mode == "cookie" then
    for _, token in ipairs(mine(lines(args[3]), nthreads)) do
      table.insert(reqs, wrk.format("GET", args[4], { ["Cookie"] = "jwt_token=" .. token }))
    end
  elseif mode == "refresh" then
    for _, token in ipairs(mine(lines(args[3]), nthreads)) do
      local body = '{"refresh_token":"' .. token .. '"}'
      table.insert(reqs, wrk.format("POST", "/token/refresh",
        { ["Content-Type"] = "application/json" }, body))
    end
  elseif mode == "login" then
    for _, line in ipairs(mine(lines(args[3]), nthreads)) do
      local email = line:match("^([^\t]+)")
      local body = '{"email":"' .. email .. '","password":"' .. args[4] .. '"}'
      table.insert(reqs, wrk.format("POST", "/login",
        { ["Content-Type"] = "application/json" }, body))
    end
  end
end

function request()
  index = index + 1
  if index > #reqs then index = 1 end  -- a refresh pool that wraps shows up as 401s
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
