#!/usr/bin/env bash
# Collect one tcaudit snapshot per node and merge them (docs/ci.md).
# Usage: deploy/collect.sh OUTDIR [--keep]   (needs kubectl and tcaudit on this machine)
set -euo pipefail
out=${1:?usage: collect.sh OUTDIR [--keep]}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
kubectl apply -f "$here/tcaudit-snapshot.yaml"
kubectl -n tcaudit rollout status daemonset/tcaudit-snapshot --timeout=300s
for pod in $(kubectl -n tcaudit get pods -l app.kubernetes.io/name=tcaudit-snapshot -o name); do
  node=$(kubectl -n tcaudit get "$pod" -o jsonpath='{.spec.nodeName}')
  kubectl -n tcaudit cp "${pod#pod/}:/out/${node}.json" "$out/${node}.json"
  kubectl -n tcaudit cp "${pod#pod/}:/out/${node}.log" "$out/${node}.log" || true
done
[ "${2:-}" = "--keep" ] || kubectl delete -f "$here/tcaudit-snapshot.yaml" --wait=false
tcaudit merge "$out"/*.json
