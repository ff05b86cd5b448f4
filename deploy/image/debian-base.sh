#!/usr/bin/env bash
# A Debian 12 (bookworm) root filesystem shaped like the debian:12-slim image, made with
# mmdebstrap from the Debian mirror, for `make image` to import as deploy/Dockerfile's
# BASE where Docker Hub cannot be reached (docs/image.md).
#
#   deploy/image/debian-base.sh OUT.tar
#
# minbase (Essential: yes, apt), merged /usr without the usrmerge package (and the perl
# it pulls in), and the slim image's dpkg excludes (no docs but the copyrights, no man
# pages, locales or info), sources for bookworm, bookworm-updates and
# bookworm-security. Acquire::Check-Valid-Until is off in the result: the mirror's
# Release files carry a Valid-Until that a machine with a wrong clock rejects
# (the image build's apt-get update runs in this root filesystem).
set -euo pipefail

out="${1:?usage: debian-base.sh OUT.tar}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
log="${out%.tar}.log"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT
if ! mmdebstrap --variant=minbase --mode=root --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$tmp" \
    "deb $mirror bookworm main" \
    "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "debian-base: mmdebstrap failed (the whole log: $log)" >&2
  exit 1
fi
mv "$tmp" "$out"
echo "debian-base: $out ($(du -h "$out" | cut -f1)), log in $log"
