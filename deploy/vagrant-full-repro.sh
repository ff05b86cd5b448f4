#!/usr/bin/env bash
# Opt-in full reproduction on a workstation VM (docs/lab.md): k3s without its own CNI,
# the chosen Cilium version, and the real Datadog agent with CWS network detections.
# Needs a hypervisor and the internet; it cannot run in tcaudit's CI.
set -euo pipefail
: "${CILIUM_VERSION:?set CILIUM_VERSION, e.g. 1.9.18}"
curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC="--flannel-backend=none --disable-network-policy" sh -
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
curl -sfL "https://github.com/cilium/cilium-cli/releases/latest/download/cilium-linux-amd64.tar.gz" \
  | tar -xz -C /usr/local/bin
cilium install --version "${CILIUM_VERSION}"
cilium status --wait
curl -sfL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash
helm repo add datadog https://helm.datadoghq.com
helm upgrade --install datadog datadog/datadog \
  --set datadog.apiKey="${DD_API_KEY:?set DD_API_KEY}" \
  --set datadog.securityAgent.runtime.enabled=true \
  --set datadog.securityAgent.runtime.network.enabled=true
kubectl run web --image=nginx --restart=Never
kubectl wait --for=condition=Ready pod/web --timeout=300s
cd /home/vagrant/tcaudit
.venv/bin/tcaudit scan
.venv/bin/tcaudit recommend
