-- wrk script for bench/run.py: every request built from a path template, with distinct values.
--
--   wrk -t1 -c16 -d5s --latency -s bench/requests.lua http://127.0.0.1:PORT -- TEMPLATE FIRST [CYCLE] [SID_PREFIX]
--
-- TEMPLATE  the path and query string; placeholders:
--             {n}    10-digit Indian mobile number, "9" then 9 digits of FIRST + k
--             {sid}  32-character CallSid: SID_PREFIX (22 characters) then a 10-digit counter
-- FIRST     the first k offset (bench/run.py gives each round its own block of numbers)
-- CYCLE     0: k = 1, 2, 3, ... (never repeats; each wrk thread takes its own million)
--           N: k = i mod N (cycles over N numbers the benchmark warmed beforehand)
-- At the end one line "BENCH_JSON {...}" carries the figures bench/run.py reads
-- (latencies in microseconds, from wrk's own histogram).

local template, first, cycle, prefix
local i = 0
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  template = args[1] or "/?n={n}"
  first = tonumber(args[2] or "0")
  cycle = tonumber(args[3] or "0")
  prefix = args[4] or "0000000000000000000000"
  thread_index = thread_index or 0
end

function request()
  i = i + 1
  local k
  if cycle > 0 then
    k = i % cycle
  else
    k = thread_index * 1000000 + i
  end
  local n = string.format("9%09d", first + k)
  local sid = prefix .. string.format("%02d%08d", thread_index, i)
  local path = template:gsub("{n}", n):gsub("{sid}", sid)
  return wrk.format(nil, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
