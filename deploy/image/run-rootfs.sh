#!/usr/bin/env bash
# Run a command in the image's root filesystem the way the DaemonSets run the image
# (privileged, hostPID, hostNetwork), where no container runtime can run it (this
# machine's podman/crun cannot set a container's rlimits; docs/image.md):
#
#   deploy/image/run-rootfs.sh [-v HOST_DIR:PATH[:ro]]... [-e NAME=VALUE]... ROOTFS CMD [ARG...]
#
# - a private mount namespace (unshare --mount, propagation slave: mounts made inside
#   never reach the host, the host's later mounts, such as new /run/netns entries,
#   still come in, like mountPropagation: HostToContainer). Everything mounted there
#   goes away with the command's last process: nothing is ever mounted on the host.
# - ROOTFS is the read-only lower layer of an overlay; the container's writes go to a
#   scratch upper layer that is deleted afterwards, so ROOTFS stays as built.
# - the host's /proc (hostPID), /sys with its submounts (privileged, hostNetwork: BTF,
#   /sys/fs/bpf) and /dev (privileged), then each -v like a hostPath volume (its path
#   resolved inside the root, a missing mount point created, as a runtime does).
# - the same network namespace as the caller (hostNetwork), a clean environment
#   (PATH, HOME=/root and the -e variables), / as working directory.
# The command's exit status is this script's.
set -euo pipefail

usage() { echo "usage: run-rootfs.sh [-v HOST_DIR:PATH[:ro]]... [-e NAME=VALUE]... ROOTFS CMD [ARG...]" >&2; exit 2; }

if [ "${1:-}" = "--inside" ]; then
  # the private mount namespace: set up the root and become the command
  shift
  outer="$1" merged="$2" lower="$3" work="$4"; shift 4
  # only ever in the namespace unshare made: never mount on the caller's
  if [ "$(readlink /proc/self/ns/mnt)" = "$outer" ]; then
    echo "run-rootfs: --inside is for the private mount namespace only" >&2
    exit 2
  fi
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/work" "$merged"
  mount --rbind /proc "$merged/proc"
  mount --rbind /sys "$merged/sys"
  mount --rbind /dev "$merged/dev"
  while [ "$1" != "--" ]; do
    IFS=: read -r host path mode <<<"$1"
    # resolved inside the root, as a runtime does: the image's /var/run is a symlink
    # to /run, which must not lead to the host's /run
    path="$(chroot "$merged" /usr/bin/realpath -m -- "$path")"
    chroot "$merged" /bin/mkdir -p -- "$path"
    mount --rbind "$host" "$merged$path"
    if [ "$mode" = "ro" ]; then mount -o remount,bind,ro "$merged$path"; fi
    shift
  done
  shift
  exec chroot "$merged" "$@"
fi

volumes=()
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)
while [ $# -gt 0 ]; do
  case "$1" in
    -v) [ $# -ge 2 ] || usage
        case "$2" in /*:/*) ;; *) echo "run-rootfs: -v wants HOST_DIR:PATH[:ro] with absolute paths: $2" >&2; exit 2;; esac
        host="${2%%:*}"
        [ -d "$host" ] || { echo "run-rootfs: no directory $host" >&2; exit 2; }
        volumes+=("$(realpath "$host"):${2#*:}"); shift 2;;
    -e) [ $# -ge 2 ] || usage; envs+=("$2"); shift 2;;
    --) shift; break;;
    -*) usage;;
    *) break;;
  esac
done
[ $# -ge 2 ] || usage
rootfs="$(realpath "$1")"; shift
[ -x "$rootfs/bin/sh" ] || { echo "run-rootfs: $rootfs is no root filesystem (no /bin/sh)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run-rootfs: needs root (mounts, chroot)" >&2; exit 3; }

work="$(mktemp -d "${TMPDIR:-/tmp}/tcaudit-rootfs.XXXXXX")"
mkdir "$work/upper" "$work/work" "$work/root"
# the mounts lived in the private namespace only; on the host, $work holds plain files
trap 'rm -rf "$work/upper" "$work/work"; rmdir "$work/root" "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unshare --mount --propagation slave -- "$0" --inside "$(readlink /proc/self/ns/mnt)" \
  "$work/root" "$rootfs" "$work" \
  "${volumes[@]}" -- /usr/bin/env -i "${envs[@]}" "$@" && rc=0 || rc=$?
exit "$rc"
