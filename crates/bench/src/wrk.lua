-- vmguard's wrk script: a RUBBoS-like mix of requests against vmguard-webapp (list threads, read a
-- thread with its comments, post a comment), and a `done` hook that prints every figure vmguard needs
-- (percentiles, each error class) on one machine-readable line, independent of wrk's text layout.
--
-- VMGUARD_WEB_THREADS and VMGUARD_WEB_USERS (environment) say how many rows the database was seeded with.

local threads = tonumber(os.getenv("VMGUARD_WEB_THREADS") or "500")
local users = tonumber(os.getenv("VMGUARD_WEB_USERS") or "200")
local pages = math.max(1, math.floor(threads / 20))

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("vmguard_seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (vmguard_seed or 0))
end

function request()
  local r = math.random(100)
  if r <= 55 then
    return wrk.format("GET", "/thread/" .. math.random(threads))
  elseif r <= 90 then
    return wrk.format("GET", "/?page=" .. (math.random(pages) - 1))
  else
    local body = "author=" .. math.random(users) .. "&body=a+comment+from+wrk+" .. math.random(1000000)
    return wrk.format("POST", "/thread/" .. math.random(threads) .. "/comment",
      { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "VMGUARD_WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
