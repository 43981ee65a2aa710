-- wrk script for envoy/bench/dpop.sh: every request carries the next DPoP proof from PROOFS (one
-- per line, never reused within a run), `Authorization: DPoP <TOKEN>`. Reports like report.lua.
local proofs, next_proof, token, path = {}, 1, nil, nil

init = function(args)
  path = args[1]
  token = io.open(args[2]):read("*l")
  for line in io.lines(args[3]) do proofs[#proofs + 1] = line end
end

request = function()
  local proof = proofs[next_proof] or "exhausted"
  next_proof = next_proof + 1
  return wrk.format("GET", path, { ["Authorization"] = "DPoP " .. token, ["DPoP"] = proof })
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format('{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"non_2xx":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
