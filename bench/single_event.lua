-- wrk script for single-event requests: each request POSTs one analytics.js-shaped event (bench/events.py)
-- with its own messageId "<run>-<thread><counter>". The bodies, one per visitor, come from the file named by
-- WRK_BODIES: a line each, split around the messageId so a request only concatenates three strings.
-- done() writes the figures as JSON to WRK_OUT.

local bodies, count = {}, 0
local thread_index = 0

function setup(thread)
  thread:set("index", thread_index)
  thread_index = thread_index + 1
end

function init(args)
  local key = os.getenv("WRK_KEY")
  run = os.getenv("WRK_RUN")
  for line in io.lines(os.getenv("WRK_BODIES")) do
    local tab = line:find("\t", 1, true)
    bodies[#bodies + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Basic " .. key
  prefix = run .. "-" .. tostring(index) .. "x"
end

function request()
  count = count + 1
  local body = bodies[count % #bodies + 1]
  return wrk.format(nil, nil, nil, body[1] .. prefix .. count .. body[2])
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
  out:close()
end
