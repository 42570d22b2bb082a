-- wrk script: plain GETs of the URL given on the command line; prints one
-- machine-readable line at the end for bench/run.sh.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT bytes=%d duration_us=%d requests=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.bytes, summary.duration, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
