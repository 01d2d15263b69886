# Docker engine for the docker provider suite (test/providers/docker.test.ts).
# Sourced by .ci/run (bash, set -euo pipefail, root, after apt-get update): it must not `exit`, and it
# exports DOCKER_HOST for everything after it. Idempotent: a second run finds dockerd answering on the
# socket and the image present, and only re-exports DOCKER_HOST.
#
# Why these dockerd flags: CI containers have no overlayfs-on-overlayfs, no iptables and no bridge
# privileges, so vfs storage and no networking are what works everywhere; workspaces run with network none.

docker_sock=/tmp/wsup-docker.sock
docker_root=/tmp/wsup-docker
docker_log=/tmp/wsup-dockerd.log
# Own pid file and exec root, so this daemon never collides with a system dockerd on the same host.
docker_pidfile=/tmp/wsup-dockerd.pid
docker_exec=/tmp/wsup-docker-exec
docker_image=wsup-test:latest

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1 || ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "docker: installing docker.io and busybox-static"
  apt-get install -y -qq docker.io busybox-static >/dev/null
fi

docker_cli() { docker -H "unix://${docker_sock}" "$@"; }

if docker_cli version >/dev/null 2>&1; then
  echo "docker: dockerd already answering on ${docker_sock}, reusing it"
else
  # A dockerd killed uncleanly leaves its pid file and socket behind and refuses to start.
  rm -f "$docker_sock" "$docker_pidfile"
  echo "docker: starting dockerd (log: ${docker_log})"
  nohup dockerd --host "unix://${docker_sock}" --data-root "$docker_root" --storage-driver=vfs \
    --iptables=false --bridge=none --pidfile "$docker_pidfile" --exec-root "$docker_exec" \
    >"$docker_log" 2>&1 &
  docker_pid=$!
  disown "$docker_pid" 2>/dev/null || true
  # Bounded wait: a daemon that does not answer in 30 s is broken, and CI should say so rather than hang.
  docker_ready=0
  for _ in $(seq 1 60); do
    if docker_cli version >/dev/null 2>&1; then docker_ready=1; break; fi
    if ! kill -0 "$docker_pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  if [ "$docker_ready" != 1 ]; then
    echo "docker: dockerd did not answer on ${docker_sock} within 30 s (pid ${docker_pid}); log follows" >&2
    tail -n 40 "$docker_log" >&2 || true
    false
  fi
  unset docker_ready docker_pid
fi

# No registry is reachable, so the test image is imported from a busybox-static rootfs.
if docker_cli image inspect "$docker_image" >/dev/null 2>&1; then
  echo "docker: image ${docker_image} present"
else
  echo "docker: importing ${docker_image} from busybox-static"
  docker_rootfs=$(mktemp -d)
  mkdir -p "$docker_rootfs"/{bin,tmp,etc,proc,sys,dev}
  cp /bin/busybox "$docker_rootfs/bin/busybox"
  # Applet symlinks made from outside, because `busybox --install` would need to run inside the rootfs.
  for applet in $("$docker_rootfs/bin/busybox" --list); do
    [ -e "$docker_rootfs/bin/$applet" ] || ln -s busybox "$docker_rootfs/bin/$applet"
  done
  tar -C "$docker_rootfs" -c . | docker_cli import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$docker_image" >/dev/null
  rm -rf "$docker_rootfs"
  unset docker_rootfs applet
fi

unset -f docker_cli
export DOCKER_HOST="unix://${docker_sock}"
echo "docker: ready, DOCKER_HOST=${DOCKER_HOST}"
unset docker_sock docker_root docker_log docker_image docker_pidfile docker_exec
