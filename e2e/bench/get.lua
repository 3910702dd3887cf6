-- wrk: GET of the URL given (JWKS, discovery), with the shared report line.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
