#!/usr/bin/env bash
# `make fuzz`: every coverage-guided fuzz target of fuzz/ (cargo-fuzz,
# libFuzzer, the nightly toolchain) for FUZZ_SECONDS each, from the committed
# seeds (fuzz/seeds/<target>) plus the working corpus it grows
# (fuzz/corpus/<target>, not committed). A crash, a failed property or a
# timeout stops the run with libFuzzer's report and the input saved under
# fuzz/artifacts/<target>/; reproduce it with
#   $FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/<file>
# The build lives outside the clone (FUZZ_TARGET_DIR, default
# ~/.cache/authplane/fuzz-target) so that a fresh clone on the same machine
# (CI) rebuilds only the workspace's own crates, not the whole instrumented
# dependency graph (515 s on two idle cores, cold).
#
# Env: FUZZ_SECONDS (10), FUZZ_RUNS (stop a target after this many
# executions, whichever of the two comes first), FUZZ_TARGETS (all), FUZZ_NO_BUILD (run the last
# build as it is), FUZZ_BUILD_ONLY (build, run nothing: make test builds
# beside its other steps and runs later with FUZZ_NO_BUILD), FUZZ_PARALLEL (all targets at once, each for FUZZ_SECONDS), FUZZ_NICE (19; the fuzzers
# yield the CPU to anything else), FUZZ_SUMMARY (a file that gets one line
# per target: executions, coverage, corpus), CARGO_FUZZ_VERSION (0.13.1).
#
# Built with --sanitizer none: the workspace forbids unsafe code, so
# AddressSanitizer would only slow every execution down. Release profile
# without debug assertions (the build is about 9 minutes on two idle cores on a cold
# cache; the flags are part of the cache key, so keep them fixed).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-10}"
runs="${FUZZ_RUNS:--1}"
nice_level="${FUZZ_NICE:-19}"
version="${CARGO_FUZZ_VERSION:-0.13.1}"
tools="${AUTHPLANE_CACHE:-$HOME/.cache/authplane}/tools/cargo-fuzz-$version"
target_dir="${FUZZ_TARGET_DIR:-${AUTHPLANE_CACHE:-$HOME/.cache/authplane}/fuzz-target}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain (minimal profile)"
  rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz $version into $tools"
  cargo install --locked "cargo-fuzz@$version" --root "$tools"
fi
export PATH="$tools/bin:$PATH"

flags=(-O --sanitizer none --target-dir "$target_dir")
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz | xargs)}"
t0=$(date +%s)
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  echo "fuzz: building $(wc -w <<<"$targets") targets (cargo +nightly fuzz build ${flags[*]})"
  nice -n 10 cargo +nightly fuzz build --fuzz-dir fuzz "${flags[@]}"
  echo "fuzz: built in $(( $(date +%s) - t0 ))s"
fi
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then exit 0; fi
echo "fuzz: ${seconds}s per target$([ "$runs" = -1 ] || echo " or $runs executions, whichever comes first")"

bin_dir="$target_dir/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
summary="${FUZZ_SUMMARY:-}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
run_one() { # TARGET -> $logs/TARGET.log and $logs/TARGET.rc
  local t="$1" rc=0
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # The binary itself rather than `cargo fuzz run`, which would first rebuild
  # whatever moved since the build above (the server's build script watches
  # the git refs, which every commit in any worktree touches).
  nice -n "$nice_level" "$bin_dir/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -max_total_time="$seconds" -runs="$runs" -timeout=10 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$t.rc"
}
if [ -n "${FUZZ_PARALLEL:-}" ]; then
  # Every target at once for the same wall time (long runs on shared cores).
  for t in $targets; do run_one "$t" & done
  wait
fi
failed=""
for t in $targets; do
  [ -n "${FUZZ_PARALLEL:-}" ] || run_one "$t"
  log="$logs/$t.log"
  rc="$(cat "$logs/$t.rc")"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")"
  line="$(printf '%-16s execs=%s exec/s=%s cov=%s ft=%s corpus=%s rc=%s' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$rc")"
  echo "fuzz: $line"
  if [ -n "$summary" ]; then echo "$line" >>"$summary"; fi
  if [ "$rc" != 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|assert|left:|right:' "$log" | head -n 20 | sed 's/^/    /'
    failed="$failed $t"
  fi
done
echo "fuzz: done in $(( $(date +%s) - t0 ))s"
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed"
  exit 1
fi
