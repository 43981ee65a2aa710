-- wrk script for envoy/bench.sh's Zipf cases: each request carries one of the tokens in FILE (one
-- per line, distinct valid tokens), drawn with probability proportional to 1/rank (Zipf, s = 1):
-- a few clients call often, most rarely, as a real population does. Reports like report.lua.
--
--   wrk ... -s zipf.lua URL -- PATH FILE
local path, tokens, cumulative, total = nil, {}, {}, 0

init = function(args)
  path = args[1]
  for line in io.lines(args[2]) do
    tokens[#tokens + 1] = "Bearer " .. line
    total = total + 1 / #tokens
    cumulative[#tokens] = total
  end
  math.randomseed(20261206)
end

request = function()
  local u = math.random() * total
  local lo, hi = 1, #tokens
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cumulative[mid] < u then lo = mid + 1 else hi = mid end
  end
  wrk.headers["Authorization"] = tokens[lo]
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
