-- wrk: POST /oauth/token grant_type=client_credentials with client_secret_basic.
-- BENCH_AUTH = "Basic base64(id:secret)", BENCH_BODY = the form body.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
