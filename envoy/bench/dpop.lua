-- wrk script for envoy/bench/dpop.sh and the keygate-dpop case of envoy/bench.sh: every request
-- carries the next DPoP proof from PROOFS (one per line, never reused within a run: with THREADS
-- wrk threads, thread k sends the proofs k+1, k+1+THREADS, ...) and `Authorization: DPoP <TOKEN>`.
-- When the proofs run out it sends a spent one, which is refused (counted as a status error).
-- Reports like report.lua.
--
--   wrk ... -s dpop.lua URL -- PATH TOKEN_FILE PROOFS_FILE [THREADS]
local proofs, next_proof, path, step = {}, 1, nil, 1
local counter = 0

setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
end

init = function(args)
  path = args[1]
  wrk.headers["Authorization"] = "DPoP " .. io.open(args[2]):read("*l")
  for line in io.lines(args[3]) do proofs[#proofs + 1] = line end
  step = tonumber(args[4] or "1")
  next_proof = 1 + (id or 0)
end

request = function()
  wrk.headers["DPoP"] = proofs[next_proof] or proofs[1] or "exhausted"
  next_proof = next_proof + step
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
