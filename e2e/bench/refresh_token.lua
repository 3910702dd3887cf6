-- wrk: POST /oauth/token grant_type=refresh_token for a public client.
--
-- Refresh tokens rotate: each may be used once, and reusing one revokes its
-- whole family. So every connection behaves like a real client that keeps
-- one grant alive: each thread owns a pool of refresh tokens (pre-minted
-- through the authorization-code flow, one grant each, BENCH_TOKENS = a file
-- of them, one a line); request() takes a token from the pool and
-- response() puts back the new one from the answer. A thread has at most
-- one request in flight per connection, so a pool of at least
-- connections/threads tokens never runs dry unless a request fails (then
-- the pool shrinks and the failure is counted by wrk as a non-2xx).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local pool = {}
local body_prefix = "grant_type=refresh_token&client_id=" .. os.getenv("BENCH_CLIENT_ID") .. "&refresh_token="
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local empty = 0

function init(args)
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then
      if i % nthreads == tid then table.insert(pool, line) end
      i = i + 1
    end
  end
end

function request()
  local t = table.remove(pool)
  if t == nil then
    empty = empty + 1
    t = "pool-empty"
  end
  return wrk.format("POST", wrk.path, headers, body_prefix .. t)
end

function response(status, headers, body)
  if status == 200 then
    local next = string.match(body, '"refresh_token":"([^"]+)"')
    if next then table.insert(pool, next) end
  end
end
