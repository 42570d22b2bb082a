-- wrk script: 4 KiB Range requests at random 4 KiB-aligned offsets of a file of
-- BENCH_FILE_SIZE bytes (what esp_https_ota's partial download sends), then the
-- same RESULT line as wrk_report.lua.
local size = tonumber(os.getenv("BENCH_FILE_SIZE") or "1048576")
local chunk = 4096
local slots = math.floor(size / chunk)

init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

request = function()
  local first = math.random(0, slots - 1) * chunk
  return wrk.format("GET", nil, { ["Range"] = "bytes=" .. first .. "-" .. (first + chunk - 1) })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT bytes=%d duration_us=%d requests=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.bytes, summary.duration, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
