-- wrk script for meshlet's bench: prints the result as one JSON line (WRKJSON {...}).
-- With WRK_DELAY_MAX_MS=N set, every connection waits a random 0..N ms before each request, so
-- -c10 with N=20 gives ~1000 rps of spread-out arrivals (the peers' "rand" runs).
local maxDelay = tonumber(os.getenv("WRK_DELAY_MAX_MS") or "")

if maxDelay and maxDelay > 0 then
  function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  end

  function delay()
    return math.random(0, maxDelay)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
