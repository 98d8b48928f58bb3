#!/bin/sh
# Deploys supplymon on Kubernetes (namespace supplymon): the ConfigMaps of the
# repository's shared files (Prometheus rules, Grafana provisioning, dashboards), then
# the manifests (kubectl apply -k). Secrets are not here: create them first,
#   kubectl -n supplymon create secret generic supplymon-secrets \
#     --from-literal=clickhouse-password=... --from-literal=clickhouse-grafana-password=... \
#     --from-literal=clickhouse-cluster-secret=... --from-literal=grafana-admin-password=... \
#     --from-literal=web-token=...
#   kubectl -n supplymon create secret generic supplymon-alertmanager --from-file=smtp-password=FILE
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ns=supplymon
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
for secret in supplymon-secrets supplymon-alertmanager; do
  kubectl -n "$ns" get secret "$secret" >/dev/null 2>&1 || { echo "create the secret $secret first (see $0)" >&2; exit 1; }
done
configmap() {  # name, then --from-file arguments
  name=$1; shift
  kubectl -n "$ns" create configmap "$name" "$@" --dry-run=client -o yaml | kubectl apply -f -
}
configmap prometheus-rules --from-file=rules.yml="$repo/infra/prometheus/rules.yml"
configmap grafana-datasources --from-file="$repo/infra/grafana/provisioning/datasources"
configmap grafana-dashboard-providers --from-file="$repo/infra/grafana/provisioning/dashboards"
configmap grafana-dashboards --from-file="$repo/dashboards/grafana"
# The topics Job runs once per deployment (a Job's pod template cannot be changed).
kubectl -n "$ns" delete job kafka-topics --ignore-not-found
kubectl apply -k "$here"
