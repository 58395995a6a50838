-- wrk script for bench/run.py: the requests of requests.lua, sent at a set rate instead of
-- as fast as the server answers.
--
--   wrk -t1 -c16 -d5s --latency -s bench/paced.lua http://127.0.0.1:PORT -- TEMPLATE FIRST CYCLE SID_PREFIX RATE
--
-- RATE  requests per second per connection. Each connection waits an exponentially
--       distributed time (mean 1/RATE) before each request, so arrivals are random, as calls
--       are, rather than in lock-step bursts of one request per connection. Latency is
--       measured from sending, so the wait itself is not counted.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "requests.lua")

local mean_ms = 0
local base_init = init

function init(args)
  base_init(args)
  mean_ms = 1000 / tonumber(args[5] or "100")
  math.randomseed(os.time() + (thread_index or 0))
end

function delay()
  return -math.log(1 - math.random()) * mean_ms
end
