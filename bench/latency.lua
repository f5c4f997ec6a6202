-- bench/latency.lua: wrk script; at the end prints one machine-readable line with the latency
-- distribution (ms) and throughput, plus error counts.
--   RESULT p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. rps=.. requests=.. non2xx=.. connect=.. read=.. write=.. timeout=..
function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "RESULT p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f rps=%.1f requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      summary.requests / secs, summary.requests,
      e.status, e.connect, e.read, e.write, e.timeout))
end
