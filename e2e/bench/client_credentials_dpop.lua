-- wrk: client_credentials with a DPoP proof per request (RFC 9449). A proof
-- is single use, so each thread takes its own share of pre-signed proofs
-- (BENCH_PROOFS, one a line, from mint-proofs.mjs) and never repeats one;
-- a thread that runs out sends a junk proof, refused with a 400 that wrk
-- counts as an error, so an undersized proof file shows in the result.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local proofs = {}
local next_proof = 1
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")

function init(args)
  local i = 0
  for line in io.lines(os.getenv("BENCH_PROOFS")) do
    if line ~= "" then
      if i % nthreads == tid then table.insert(proofs, line) end
      i = i + 1
    end
  end
end

function request()
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = auth }
  headers["DPoP"] = proofs[next_proof] or "proofs-exhausted"
  next_proof = next_proof + 1
  return wrk.format("POST", nil, headers, body)
end
