# Sourced by e2e/abuse/run.sh and e2e/faults/run.sh: runs one invocation of a
# stdlib-Python check script whose last line is "N passed, M failed", prints
# its output and adds the counts to $total_passed and $total_failed (an
# invocation that ends without that line counts as one failure).
#
#   py_suite LABEL SCRIPT [ARGS...]
py_suite() {
  local label="$1" script="$2" out rc=0 last
  shift 2
  out="$(timeout 300 python3 "$script" "$@" 2>&1)" || rc=$?
  echo "$out" | sed '$d'
  last="$(echo "$out" | tail -n 1)"
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
  else
    echo "$last"
    echo "$label: $(basename "$script") $* ended without a summary (exit $rc)"
    total_failed=$((total_failed + 1))
  fi
}
