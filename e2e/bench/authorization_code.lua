-- wrk: the authorization code flow end to end, for a public client with
-- PKCE S256, against AuthPlane or the oidc-provider reference alike. One
-- operation (`ops`) is a flow that ended in a token (200 with access_token).
--
--   BENCH_AUTHORIZE    path?query of the authorization request (fixed PKCE
--                      challenge of BENCH_TOKEN_BODY's verifier; a code is
--                      single use, the challenge need not be)
--   BENCH_COOKIE       cookies of a signed-in user with remembered consent
--                      ("returning user"), or empty ("first-time user")
--   BENCH_USER_PREFIX  first-time user: every flow signs in a user never seen
--                      before, <prefix><n>, with BENCH_PASSWORD, and consents
--   BENCH_TOKEN_PATH, BENCH_TOKEN_BODY (form body ending in "code=")
--   BENCH_REDIRECT     the client's redirect URI (where a code ends a flow)
--
-- wrk's response() does not say which request it answers, and a thread has
-- many connections, so a flow's state travels in its messages: every step
-- of both servers names its flow (AuthPlane `request=ar_…`, oidc-provider
-- `/interaction/<uid>` and `/auth/<uid>`, in the URL or the form), and the
-- cookies each flow has been given are kept under that name. Each answer
-- queues the flow's next request (a redirect inside the server is followed,
-- a form is filled and posted, a code is exchanged); request() sends queued
-- steps first and starts a new flow when there are none. A flow that ends
-- anywhere else (an error page) is counted in `stuck`.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local authorize = os.getenv("BENCH_AUTHORIZE")
local base_cookie = os.getenv("BENCH_COOKIE") or ""
local user_prefix = os.getenv("BENCH_USER_PREFIX") or ""
local password = os.getenv("BENCH_PASSWORD") or ""
local token_path = os.getenv("BENCH_TOKEN_PATH")
local token_body = os.getenv("BENCH_TOKEN_BODY")
local redirect = os.getenv("BENCH_REDIRECT")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))

ops = 0
stuck = 0
local queue = {}
local jars = {}
local users = 0

local function hget(h, name) return h[name] or h[string.lower(name)] end

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function htmlunescape(s) return (string.gsub(s, "&amp;", "&")) end

local function parse_pairs(jar, s)
  for pair in string.gmatch(s or "", "[^;]+") do
    local k, v = string.match(pair, "^%s*([^=]+)=(.*)$")
    if k then
      k = string.gsub(k, "%s+$", "")
      if v == "" then jar[k] = nil else jar[k] = v end
    end
  end
end

-- The signed-in user's cookies, kept up to date like a browser keeps them:
-- oidc-provider hands out a new session cookie on every authorization (and
-- keeps only its 1,000 newest artifacts), so a cookie it replaces is
-- replaced here too.
local base = {}
parse_pairs(base, base_cookie)

local function base_jar()
  local jar = {}
  for k, v in pairs(base) do jar[k] = v end
  return jar
end

-- Cookies a response sets: the reference copies all of them into one
-- header; AuthPlane sets at most one per response.
local function take_cookies(jar, headers)
  local set = {}
  local all = hget(headers, "X-Bench-Set-Cookie")
  local one = hget(headers, "Set-Cookie")
  if all then
    parse_pairs(set, all)
  elseif one then
    local pair = string.match(one, "^([^;]*)")
    local k = string.match(pair, "^%s*([^=]+)=")
    if k and string.find(string.lower(one), "max-age=0", 1, true) then
      jar[k] = nil
    else
      parse_pairs(set, pair)
    end
  end
  for k, v in pairs(set) do
    jar[k] = v
    if base[k] then base[k] = v end
  end
end

local function cookie_header(jar)
  local t = {}
  for k, v in pairs(jar) do t[#t + 1] = k .. "=" .. v end
  return table.concat(t, "; ")
end

local function flow_key(s)
  return string.match(s, "[?&]request=([%w_%-]+)") or string.match(s, "/interaction/([%w_%-]+)")
    or string.match(s, "/auth/([%w_%-]+)")
end

-- Two generations, so the table stays small over millions of flows while
-- every flow in flight (at most one per connection) keeps its cookies.
local old_jars, jar_count = {}, 0
local function jar_for(key)
  local jar = jars[key] or old_jars[key]
  if not jar then
    jar = base_jar()
    jar_count = jar_count + 1
    if jar_count > 4096 then
      old_jars, jars, jar_count = jars, {}, 0
    end
  end
  jars[key] = jar
  return jar
end

function request()
  local r = table.remove(queue, 1)
  if r then return r end
  local headers = {}
  if next(base) then headers["Cookie"] = cookie_header(base) end
  return wrk.format("GET", authorize, headers)
end

local debug = os.getenv("BENCH_DEBUG")
local function stuck_at(status, headers, body)
  stuck = stuck + 1
  if debug and stuck <= 3 then
    io.stderr:write(string.format("stuck: %d %s %s\n", status, hget(headers, "Location") or "", string.sub(body or "", 1, 300)))
  end
end

function response(status, headers, body)
  if status == 302 or status == 303 then
    local loc = hget(headers, "Location") or ""
    if string.sub(loc, 1, #redirect) == redirect then
      take_cookies({}, headers)
      local code = string.match(loc, "[?&]code=([^&]+)")
      if code then
        queue[#queue + 1] = wrk.format("POST", token_path, { ["Content-Type"] = "application/x-www-form-urlencoded" }, token_body .. code)
      else
        stuck_at(status, headers, body)
      end
      return
    end
    local path = string.gsub(loc, "^https?://[^/]+", "")
    local key = flow_key(path)
    if not key then stuck_at(status, headers, body) return end
    local jar = jar_for(key)
    take_cookies(jar, headers)
    queue[#queue + 1] = wrk.format("GET", path, { ["Cookie"] = cookie_header(jar) })
  elseif status == 200 and string.find(body, '"access_token"', 1, true) then
    ops = ops + 1
  elseif status == 200 then
    local form = string.match(body, "<form[^>]*>.-</form>")
    local action = form and string.match(form, 'action="([^"]*)"')
    if not action then stuck_at(status, headers, body) return end
    action = htmlunescape(action)
    local fields = {}
    local key = flow_key(action)
    for input in string.gmatch(form, "<input[^>]*>") do
      local name = string.match(input, 'name="([^"]*)"')
      local value = htmlunescape(string.match(input, 'value="([^"]*)"') or "")
      local kind = string.match(input, 'type="([^"]*)"') or "text"
      if name == "username" then
        value = user_prefix .. (tid + nthreads * users)
        users = users + 1
      elseif kind == "password" then
        value = password
      end
      if name then
        fields[#fields + 1] = name .. "=" .. urlencode(value)
        if (name == "request" or name == "uid") and not key then key = value end
      end
    end
    if string.find(form, 'name="decision"', 1, true) then fields[#fields + 1] = "decision=approve" end
    if not key then stuck_at(status, headers, body) return end
    local jar = jar_for(key)
    take_cookies(jar, headers)
    queue[#queue + 1] = wrk.format("POST", action, { ["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = cookie_header(jar) }, table.concat(fields, "&"))
  else
    stuck_at(status, headers, body)
  end
end
