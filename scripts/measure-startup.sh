#!/usr/bin/env bash
# Cold start to the first healthy /health, and idle RSS, of a release authserver.
set -euo pipefail
bin=${1:-/work/main/target/release/authserver}
dir=$(mktemp -d); cd "$dir"
sed -e 's|sqlite://data/authplane.db|sqlite://'"$dir"'/a.db|' -e 's|./data/keys|'"$dir"'/keys|' /work/main/config/dev.yaml > c.yaml
start=$(date +%s%N)
/usr/bin/time -v "$bin" --config c.yaml serve > log 2> time.txt &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:9000/health; do sleep 0.005; done
end=$(date +%s%N)
echo "cold start to healthy /health: $(( (end - start) / 1000000 )) ms (fresh SQLite file, key generation, migrations)"
sleep 3
srv=$(pgrep -f "$bin --config c.yaml serve" | tail -1)
echo "idle RSS after 3 s: $(awk '/VmRSS/ {print $2, $3}' /proc/$srv/status)"
kill -TERM $srv; wait $pid || true
grep -E "Maximum resident" time.txt
# warm start: same DB and keys
start=$(date +%s%N)
"$bin" --config c.yaml serve > log2 2>&1 &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:9000/health; do sleep 0.005; done
end=$(date +%s%N)
echo "warm start to healthy /health: $(( (end - start) / 1000000 )) ms"
kill -TERM $pid; wait $pid || true
rm -rf "$dir"
