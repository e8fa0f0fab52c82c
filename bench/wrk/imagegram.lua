-- wrk scenarios for Imagegram (driven by examples/load.rs; see BENCHMARKS.md).
-- Environment: SCENARIO (ceiling|first|deep|post|create|delete|mix|first-blocks|deep-blocks),
-- BENCH_DATA (folder with cursors.txt, posts.txt, comments.txt), TOKEN (bearer),
-- RESULT (JSON file written when the run ends); for runs offered at a rate (the
-- mix, deep@N, create@N), RATE (requests/s in all), which paces it (see delay()).

local scenario = os.getenv("SCENARIO")
local data = os.getenv("BENCH_DATA")
local token = os.getenv("TOKEN")
local result = os.getenv("RESULT")

local function lines(name)
  local t = {}
  local f = io.open(data .. "/" .. name, "r")
  if f == nil then return t end
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

local cursors = lines("cursors.txt")
local posts = lines("posts.txt")
local comments = (scenario == "delete" or scenario == "mix") and lines("comments.txt") or {}
local created = (scenario == "create" or scenario == "mix") and io.open(data .. "/created.txt", "a") or nil
if created ~= nil then created:setvbuf("line") end
local next_comment = 0
-- The mix deletes from the end of the list: the delete run used it from the start.
local last_comment = #comments + 1
-- Set in a thread's own Lua state when the delete run used up its ids (read in done()).
exhausted = false
local auth = { ["Authorization"] = "Bearer " .. (token or ""), ["Content-Type"] = "application/json" }
math.randomseed(os.time())

local function pick(t) return t[math.random(#t)] end

local function first() return wrk.format("GET", "/v1/posts") end
local function deep() return wrk.format("GET", "/v1/posts?cursor=" .. pick(cursors)) end
-- A signed-in reader (TOKEN: one who blocks 100 authors, for the -blocks runs).
local reader = { ["Authorization"] = "Bearer " .. (token or "") }
local function first_blocks() return wrk.format("GET", "/v1/posts", reader) end
local function deep_blocks() return wrk.format("GET", "/v1/posts?cursor=" .. pick(cursors), reader) end
local function post() return wrk.format("GET", "/v1/posts/" .. pick(posts)) end
local function create()
  local body = '{"body":"load test comment ' .. math.random(1000000) .. ', a sentence of ordinary length"}'
  return wrk.format("POST", "/v1/posts/" .. pick(posts) .. "/comments", auth, body)
end
local function delete_request(line)
  local p, c = line:match("(%S+) (%S+)")
  return wrk.format("DELETE", "/v1/posts/" .. p .. "/comments/" .. c, auth)
end
local function delete()
  next_comment = next_comment + 1
  local line = comments[next_comment]
  if line == nil then -- ids used up: reported, so the figure is not taken for deletes
    exhausted = true
    return first()
  end
  return delete_request(line)
end

-- The forecast (100 reads/s, 100,000 comments and 1,000 images an hour) scaled
-- up: reads dominate, about one request in five writes a comment.
local function mix()
  local r = math.random(100)
  if r <= 60 then return first()
  elseif r <= 70 then return deep()
  elseif r <= 78 then return post()
  elseif r <= 99 then return create()
  elseif last_comment > 1 then
    last_comment = last_comment - 1
    return delete_request(comments[last_comment])
  else return first() end
end

-- With RATE set (the mix always; other scenarios for their at-rate runs) the
-- load is offered at that rate, not as fast as the server answers: requests go
-- out on one schedule for the whole thread, a random 0..2x 1/RATE apart, each on
-- whichever connection is free (wrk times a request from when it is sent, so the
-- wait is not latency). A schedule rather than a wait per connection: a wait
-- plus the request's own time paced each connection, and the offer fell ~3%
-- short of RATE. A schedule fallen behind (a stall) catches up, as arrivals
-- would, as far as the connections allow.
local rate = tonumber(os.getenv("RATE") or "")
if rate ~= nil then
  local ffi = require("ffi") -- wrk's Lua is LuaJIT: a monotonic clock through libc
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } imagegram_timespec;
    int clock_gettime(int clock_id, imagegram_timespec *ts);
  ]]
  local ts = ffi.new("imagegram_timespec")
  local CLOCK_MONOTONIC = 1
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local gap = 1000 / rate
  local next_at = nil
  function delay()
    local now = now_ms()
    next_at = (next_at or now) + math.random() * 2 * gap
    return math.max(0, math.floor(next_at - now))
  end
end

-- Fixed requests are built once by wrk itself (no Lua call per request), so the
-- ceiling and the first page cost the load generator the same.
if scenario == "ceiling" then
  wrk.path = "/v1/_bench/ceiling"
elseif scenario == "first" then
  wrk.path = "/v1/posts"
else
  local scenarios = {
    deep = deep, post = post, create = create, delete = delete, mix = mix,
    ["first-blocks"] = first_blocks, ["deep-blocks"] = deep_blocks,
  }
  request = scenarios[scenario]
end

-- Only the runs that create comments read response bodies: defining `response`
-- makes wrk hand every body (30 KB feed pages) to Lua, which costs the load
-- generator CPU that the server, on the same two cores, would otherwise get.
if created ~= nil then
  function response(status, headers, body)
    if status == 201 then
      local c, p = body:match('"id":"([^"]+)","post_id":"([^"]+)"')
      if c ~= nil then created:write(p .. " " .. c .. "\n") end
    end
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local ran_out = false
  for _, t in ipairs(threads) do ran_out = ran_out or t:get("exhausted") end
  local e = summary.errors
  local f = io.open(result, "w")
  f:write(string.format(
    '{"scenario":"%s","requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"ids_exhausted":%s}\n',
    scenario, summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout, tostring(ran_out)))
  f:close()
end
