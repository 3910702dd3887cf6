# Sourced by the scripts that run Node packages (e2e/oauth, e2e/inspector,
# sdk/tests, e2e/bench).
#
#   npm_ci TAG DIR   installs DIR's packages exactly as package-lock.json pins
#                    them, only when the lock changed since the last install
#                    (a stamp in node_modules holds the lock's sha256)
npm_ci() {
  local tag="$1" dir="$2" stamp want
  stamp="$dir/node_modules/.lock-sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "$tag: installing npm packages (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  else
    echo "$tag: npm packages up to date"
  fi
}
