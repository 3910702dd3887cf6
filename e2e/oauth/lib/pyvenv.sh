# Sourced by the e2e scripts that run Python (e2e/oauth, e2e/otel, e2e/metrics).
#
#   py_venv TAG REQUIREMENTS_TXT   sets $venv to a virtualenv with exactly the
#                                  pinned packages, creating it only when none
#                                  exists for this file and Python version
#
# The venv lives in ${XDG_CACHE_HOME:-~/.cache}/authplane/venv-<hash of the
# requirements and the Python version>, outside the clone, so a fresh clone on
# the same machine installs nothing, and scripts that pin the same packages
# share one venv. `.complete` is written last: an interrupted install is redone.
py_venv() {
  local tag="$1" req="$2" cache py_version req_sum
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/authplane"
  py_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  req_sum="$(cat "$req" <(echo "$py_version") | sha256sum | cut -c1-16)"
  venv="$cache/venv-$req_sum"
  if [[ ! -f "$venv/.complete" ]]; then
    echo "$tag: creating $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req"
    touch "$venv/.complete"
  else
    echo "$tag: python venv up to date ($venv)"
  fi
}
