#!/usr/bin/env bash
# Build the tcaudit image from deploy/Dockerfile with buildah, on a machine that cannot
# pull debian:12-slim and cannot run containers (docs/image.md):
#
#   deploy/image/build.sh BASE.tar OUT_DIR
#
# 1. BASE.tar (deploy/image/debian-base.sh) becomes the one-layer image
#    localhost/tcaudit-base:bookworm, its id in OUT_DIR/base.id; skipped when that image
#    still holds this very tarball (its sha256 is a label), so the Dockerfile's layer
#    cache stays valid.
# 2. buildah bud --layers --isolation chroot: RUN steps run chrooted, without an OCI
#    runtime (crun cannot set the container's rlimits here). The host's CA bundle goes
#    in as the build secret pip-ca, for a TLS-inspecting proxy in front of PyPI.
# 3. OUT_DIR/tcaudit-VERSION.tar: the image as a docker-archive (docker load, podman
#    load, ctr images import); OUT_DIR/rootfs: its root filesystem, exported with podman
#    create + export (no mount on the host), for deploy/image/run-rootfs.sh and
#    `make image-test`; OUT_DIR/image.json: what was built. Both are redone only when
#    the image id changed.
set -euo pipefail

base_tar="${1:?usage: build.sh BASE.tar OUT_DIR}"
out="${2:?usage: build.sh BASE.tar OUT_DIR}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/tcaudit/__init__.py")"
base_ref="${TCAUDIT_BASE_IMAGE:-localhost/tcaudit-base:bookworm}"
image_ref="${TCAUDIT_IMAGE:-localhost/tcaudit:$version}"
ca="${TCAUDIT_PIP_CA:-/etc/ssl/certs/ca-certificates.crt}"
mkdir -p "$out"
log="$out/build.log"
: >"$log"

step() { echo "image: [${SECONDS}s] $*"; }
fail() { tail -n 40 "$log" >&2; echo "image: $1 failed (the whole log: $log)" >&2; exit 1; }

# -- 1. the base --------------------------------------------------------------------
# OUT_DIR/base.id names the image this tarball became (checked against its label) and
# is used by id: another checkout may tag a base of its own meanwhile
sum="$(sha256sum "$base_tar" | cut -d' ' -f1)"
base_id="$(cat "$out/base.id" 2>/dev/null || true)"
if [ -z "$base_id" ] || [ "$(buildah inspect --type image \
    --format '{{index .OCIv1.Config.Labels "tcaudit.base.sha256"}}' "$base_id" 2>/dev/null)" != "$sum" ]; then
  step "importing $base_tar as $base_ref"
  ctr="$(buildah from scratch)"
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  buildah add --quiet "$ctr" "$base_tar" / >>"$log" 2>&1 || fail "importing the base"
  buildah config --cmd /bin/bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label tcaudit.base.sha256="$sum" \
    --label org.opencontainers.image.description="Debian 12 minbase (mmdebstrap), slim" \
    "$ctr"
  buildah commit --quiet --rm --iidfile "$out/base.iid" "$ctr" "$base_ref" >>"$log" 2>&1 \
    || fail "committing the base"
  trap - EXIT
  sed 's/^sha256://' "$out/base.iid" >"$out/base.id"
  rm -f "$out/base.iid"
  base_id="$(cat "$out/base.id")"
fi

# -- 2. the image -------------------------------------------------------------------
secret=()
[ -s "$ca" ] && secret=(--secret "id=pip-ca,src=$ca")
step "building $image_ref from deploy/Dockerfile (BASE=$base_ref, ${base_id:0:12})"
# the id from --iidfile, not the tag: another checkout may build the same tag meanwhile
buildah bud --layers --isolation chroot --network host "${secret[@]}" \
  --build-arg "BASE=$base_id" --build-arg "VERSION=$version" --iidfile "$out/iid" \
  -f "$repo/deploy/Dockerfile" -t "$image_ref" "$repo" >>"$log" 2>&1 || fail "buildah bud"
id="$(sed 's/^sha256://' "$out/iid")"
rm -f "$out/iid"
size="$(podman image inspect --format '{{.Size}}' "$id")"

# -- 3. the archive and the root filesystem -------------------------------------------
archive="$out/tcaudit-$version.tar"
rootfs="$out/rootfs"
if [ -f "$out/image.json" ] && [ -d "$rootfs" ] && [ -f "$archive" ] \
    && grep -q "\"id\": \"$id\"" "$out/image.json"; then
  step "$image_ref is unchanged ($id): archive and rootfs kept"
  exit 0
fi
# never delete through a mount: a root filesystem something is mounted on stays
if findmnt -rn -o TARGET | grep -q "^$(realpath -m "$rootfs")\(/\|$\)"; then
  echo "image: something is mounted under $rootfs; unmount it first" >&2
  exit 1
fi
step "writing $archive"
rm -f "$archive.tmp"
buildah push --quiet "$id" "docker-archive:$archive.tmp:$image_ref" >>"$log" 2>&1 \
  || fail "writing the archive"
mv "$archive.tmp" "$archive"
step "exporting the root filesystem to $rootfs"
rm -rf "$rootfs.tmp" && mkdir "$rootfs.tmp"
name="tcaudit-export-$$"
podman create --name "$name" "$id" >>"$log" 2>&1 || fail "podman create"
trap 'podman rm "$name" >/dev/null 2>&1 || true' EXIT
podman export "$name" | tar -x -C "$rootfs.tmp" --numeric-owner || fail "podman export"
rm -rf "$rootfs"
mv "$rootfs.tmp" "$rootfs"
cat >"$out/image.json" <<JSON
{
  "image": "$image_ref",
  "id": "$id",
  "size_bytes": $size,
  "archive": "$archive",
  "rootfs": "$rootfs",
  "base": "$base_ref",
  "base_sha256": "$sum",
  "version": "$version"
}
JSON
step "$image_ref $id, $((size / 1000000)) MB; archive $(du -h "$archive" | cut -f1)"
