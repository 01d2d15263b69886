# Debian's Chromium for the visualizer's browser tests (test/visualizer/e2e.test.ts, driven by playwright-core).
# Sourced by .ci/run (bash, set -euo pipefail, root, after apt-get update): it must not `exit`, and it
# exports WSUP_CHROMIUM (the binary the tests launch) for everything after it. Idempotent: a second run
# finds /usr/bin/chromium and installs nothing. No browser is downloaded by npm: playwright-core is pointed
# at this binary with `executablePath`.

chromium_bin=/usr/bin/chromium

if [ ! -x "$chromium_bin" ]; then
  echo "chromium: installing Debian's chromium"
  apt-get install -y -qq chromium >/dev/null
fi

# A binary that cannot even print its version (missing libraries) is broken: say so here, not in a test.
if ! chromium_version=$("$chromium_bin" --version 2>&1); then
  echo "chromium: ${chromium_bin} is installed but does not run: ${chromium_version}" >&2
  false
fi
# Debian's wrapper script may print shell noise before the version line; the version is the last line.
export WSUP_CHROMIUM="$chromium_bin"
echo "chromium: ready, WSUP_CHROMIUM=${WSUP_CHROMIUM}, $(printf '%s\n' "$chromium_version" | tail -n 1)"
unset chromium_bin chromium_version
