-- Used by bench/compression.sh in place of report.lua: the same one-line summary plus the
-- tail of the latency distribution (p99.9 and max), for the cold-cache scenario where the
-- worst small-file latencies are the result.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d p50_us=%.0f p99_us=%.0f p999_us=%.0f " ..
    "max_us=%.0f err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
