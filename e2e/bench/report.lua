-- Shared by the wrk scripts: one machine-readable line at the end.
-- (wrk loads one script; the others `dofile` this one.) A script that
-- counts its own operations (a whole code flow, say) keeps them in the
-- globals `ops` and `stuck` of each thread; they are summed here.
bench_threads = {}

function setup(thread)
  thread:set("tid", #bench_threads)
  table.insert(bench_threads, thread)
end

function done(summary, latency, requests)
  local e = summary.errors
  local ops, stuck = -1, 0
  for _, t in ipairs(bench_threads) do
    local n = t:get("ops")
    if n then ops = math.max(ops, 0) + n end
    stuck = stuck + (t:get("stuck") or 0)
  end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d ops=%d stuck=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, ops, stuck))
end
