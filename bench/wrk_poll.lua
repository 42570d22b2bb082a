-- wrk script for bench/poll_bench.sh: device polls, each from one of BENCH_DEVICES
-- registered device ids (BENCH_PREFIX-NNNNNN) chosen at random, all on version 1.0.0
-- of channel BENCH_CHANNEL (so each poll is answered with a signed manifest). The same
-- request lines go to nginx, which maps the path to a static JSON file of the manifest's size.
local devices = tonumber(os.getenv("BENCH_DEVICES") or "100000")
local product = os.getenv("BENCH_PRODUCT") or "bench"
local version = os.getenv("BENCH_VERSION") or "1.0.0"
local channel = os.getenv("BENCH_CHANNEL") or "stable"
local prefix = os.getenv("BENCH_PREFIX") or "dev"
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end

init = function(args)
  math.randomseed(os.time() * 1000 + (id or 0))
end

request = function()
  local n = math.random(0, devices - 1)
  return wrk.format("GET", string.format(
    "/api/v1/update?product=%s&chip=esp32&layout=ota&slot=ota_0&version=%s&device=%s-%06d&channel=%s",
    product, version, prefix, n, channel))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT bytes=%d duration_us=%d requests=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.bytes, summary.duration, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
