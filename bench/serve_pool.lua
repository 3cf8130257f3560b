-- wrk script for bench/serve.sh: POSTs the scans listed in $POOL (one path per line) round-robin
-- to /v1/predict and counts the answers by status; done() prints one JSON line.
local bodies = {}
counts = {}
local threads = {}
local next_body = 1

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for path in io.lines(os.getenv("POOL")) do
    local file = assert(io.open(path, "rb"))
    table.insert(bodies, file:read("*a"))
    file:close()
  end
  counts = {}
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/v1/predict", { ["Content-Type"] = "application/octet-stream" }, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local by_status = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts") or {}
    for status, n in pairs(c) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(by_status) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "seconds": %.1f, "requests_per_second": %.2f, "p50_ms": %.1f, "p95_ms": %.1f, "p99_ms": %.1f, "max_ms": %.1f, "status": {%s}, "socket_errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, table.concat(parts, ", "),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
