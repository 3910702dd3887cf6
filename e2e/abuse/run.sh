#!/usr/bin/env bash
# The black-box probe of issue 11 as a suite: real HTTP from outside against
# the authserver binary, bounded load, loopback only (docs/security.md).
#
#   e2e/abuse/run.sh        # prints "N passed, M failed"; exit 1 on failure
#
# Two servers, one after the other:
#   1. failure throttle off (so every sign-in reaches the password hasher):
#      200 concurrent wrong-password sign-ins must keep RSS under 100 MB;
#      bodies that never finish arriving and idle connections are cut.
#   3. server.max_connections 8: 40 idle connections, at most 8 held.
#   2. defaults, with 127.0.0.1 as a trusted proxy (so X-Forwarded-For can play
#      other client addresses) and 10 registrations a minute: brute force on a
#      password and on a client secret is throttled without locking the user
#      out; registration is rate-limited and its input bounded.
#
# Env: AUTHSERVER_BIN (default: the debug build; `make bench` builds a release
# one at target/release/authserver, which gives the same results faster).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
trap 'as_stop' EXIT
trap 'exit 130' INT TERM

if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
  echo "e2e-abuse: building authserver"
  "$root/scripts/build-test-bins.sh"
  AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authserver"
fi

total_passed=0
total_failed=0
# shellcheck source=../oauth/lib/pysuite.sh
source "$here/../oauth/lib/pysuite.sh"
run() { py_suite e2e-abuse "$here/abuse.py" "$@"; }

echo "e2e-abuse: server 1 (failure throttle off; read timeout 5 s, the default)"
AUTHPLANE_LIMITS_FAILURE_THROTTLE=false as_start abuse-1 "$AUTHSERVER_BIN"
run memory
READ_TIMEOUT=5 run slow-body
as_stop

echo "e2e-abuse: server 3 (server.max_connections 8)"
AUTHPLANE_SERVER_MAX_CONNECTIONS=8 as_start abuse-3 "$AUTHSERVER_BIN"
MAX_CONNECTIONS=8 run connections
as_stop

echo "e2e-abuse: server 2 (defaults; 127.0.0.1 trusted as a proxy; 10 registrations a minute)"
AUTHPLANE_SERVER_TRUSTED_PROXIES=127.0.0.1 AUTHPLANE_LIMITS_REGISTRATIONS_PER_MINUTE=10 \
  as_start abuse-2 "$AUTHSERVER_BIN"
run brute-force
run registration
as_stop

echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
