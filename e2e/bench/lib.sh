# Shared by e2e/bench/run.sh and e2e/bench/otel.sh (sourced). Expects $here
# (e2e/bench), $root, $threads, $conns and $duration to be set.

# wrk from Debian when missing; the release authserver unless AUTHSERVER_BIN
# names one.
bench_prepare() {
  if ! command -v wrk >/dev/null; then
    echo "bench: installing Debian's wrk"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends wrk >/dev/null
  fi
  if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
    echo "bench: cargo build --release -p authplane-server"
    (cd "$root" && cargo build --quiet --release --locked -p authplane-server --bin authserver)
    AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/release/authserver"
  fi
}
export BENCH_LUA_DIR="$here" BENCH_THREADS="$threads"

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
rss_mb() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU time (user + system) of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
clk_tck="$(getconf CLK_TCK)"
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }

# jwt_header TOKEN -> the decoded JOSE header
jwt_header() { python3 -c 'import sys,base64; h=sys.argv[1].split(".")[0]; print(base64.urlsafe_b64decode(h+"="*(-len(h)%4)).decode())' "$1"; }

# check_token URL AUTH BODY: one request by hand, like the load will send.
check_token() {
  local out tok
  out="$(curl -fsS -H "Authorization: $2" -H 'Content-Type: application/x-www-form-urlencoded' --data "$3" "$1")"
  tok="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$out")"
  echo "  token header: $(jwt_header "$tok")"
}

# run_wrk NAME URL SCRIPT PID -> sets R_* and prints a line
declare -A RESULT
run_wrk() {
  local name="$1" url="$2" script="$3" pid="$4" out line ok
  echo "  load average before: $(loadavg)"
  local t0 t1
  t0="$(cpu_ticks "$pid")"
  out="$(wrk -t"$threads" -c"$conns" -d"$duration" -s "$here/$script" "$url")"
  t1="$(cpu_ticks "$pid")"
  line="$(grep '^BENCH ' <<<"$out")"
  local req dur p50 p99 st
  req="$(kv requests "$line")"
  dur="$(kv duration_us "$line")"
  p50="$(kv p50_us "$line")"
  p99="$(kv p99_us "$line")"
  st="$(( $(kv err_status "$line") + $(kv err_connect "$line") + $(kv err_read "$line") + $(kv err_write "$line") + $(kv err_timeout "$line") + $(kv stuck "$line") ))"
  ok=$((req - $(kv err_status "$line")))
  # A script that counts its own operations (a code flow is several
  # requests) reports them as ops; the rest count requests.
  local ops
  ops="$(kv ops "$line")"
  if [[ "${ops:--1}" -ge 0 ]]; then
    RESULT[$name.per_op]="$(awk -v r="$req" -v o="$ops" 'BEGIN { printf "%.1f", o ? r / o : 0 }')"
    ok="$ops"
  fi
  RESULT[$name.ok]="$ok"
  RESULT[$name.errors]="$st"
  RESULT[$name.tps]="$(awk -v n="$ok" -v d="$dur" 'BEGIN { printf "%.0f", n / (d / 1e6) }')"
  RESULT[$name.p50]="$(awk -v u="$p50" 'BEGIN { printf "%.2f", u / 1000 }')"
  RESULT[$name.p99]="$(awk -v u="$p99" 'BEGIN { printf "%.2f", u / 1000 }')"
  RESULT[$name.rss]="$(rss_mb "$pid" VmRSS)"
  RESULT[$name.hwm]="$(rss_mb "$pid" VmHWM)"
  # Server CPU per token: less sensitive than tokens/s to whatever else the machine runs.
  RESULT[$name.cpu]="$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$ok" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')"
  printf '  %s: %s ops/s%s, p50 %s ms, p99 %s ms, %s errors, RSS %s MB (peak %s MB), server CPU %s us/op\n' \
    "$name" "${RESULT[$name.tps]}" "${RESULT[$name.per_op]:+ (${RESULT[$name.per_op]} requests each)}" "${RESULT[$name.p50]}" "${RESULT[$name.p99]}" "$st" "${RESULT[$name.rss]}" "${RESULT[$name.hwm]}" "${RESULT[$name.cpu]}"
  if [[ "$st" != 0 ]]; then
    echo "$out" | sed 's/^/    wrk: /'
  fi
}

