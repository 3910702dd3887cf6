# Sourced by the shell e2e suites (cluster-smoke, helm-test, pods-test): one
# `ok - …` / `FAIL - …` line per check, counted in $passed and $failed.
#
#   ok <what>                 a passed check
#   bad <what>                a failed one
#   check <what> <command…>   runs the command: ok if it succeeds, else bad
#                             with the last 30 lines of its output, indented
# shellcheck shell=bash
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() {
  local what="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$what"; else bad "$what"; sed 's/^/    /' <<<"$out" | tail -n 30; fi
}
