#!/bin/sh
# Prometheus, Alertmanager and Grafana configs from the catalog, the single source: the
# `impactwatch-config` service of docker-compose.yaml runs this before Prometheus, Alertmanager
# and Grafana start, into the volume they all mount. Every address comes from the environment
# the compose file sets (tests/unit/test_deploy_compose.py runs this script with it and checks
# the result against the services).
#
#   OUT_DIR/prometheus/   prometheus.yml, alertmanager.yml, rules/, runbooks/   (impactwatch rules)
#   OUT_DIR/grafana/      provisioning/, dashboards/, import/                    (impactwatch dashboards)
set -eu

: "${CATALOG:?is not set: the catalog YAML}"
: "${OUT_DIR:?is not set: the folder to write into}"
: "${ROUTER_URL:?is not set: the router's webhook URL, as Alertmanager reaches it}"
: "${ROUTER_TOKEN_FILE:?is not set: the webhook token file, as Alertmanager sees it}"
: "${COLLECTOR_TARGETS:?is not set: HOST:PORT of each collector, comma-separated}"
: "${ROUTER_TARGETS:?is not set: HOST:PORT of each router, comma-separated}"
: "${ALERTMANAGER_TARGETS:?is not set: HOST:PORT of each Alertmanager, comma-separated}"
: "${PROMETHEUS_URL:?is not set: Prometheus, as Grafana reaches it}"
: "${GRAFANA_DASHBOARDS_PATH:?is not set: where Grafana sees OUT_DIR/grafana/dashboards}"

if [ -n "${RUNBOOK_BASE_URL:-}" ]; then
  set -- --runbook-base-url "$RUNBOOK_BASE_URL"
fi

impactwatch rules --catalog "$CATALOG" --out "$OUT_DIR/prometheus" \
  --router-url "$ROUTER_URL" --token-file "$ROUTER_TOKEN_FILE" \
  --set "collector_targets=$COLLECTOR_TARGETS" \
  --set "router_targets=$ROUTER_TARGETS" \
  --set "alertmanager_targets=$ALERTMANAGER_TARGETS" \
  "$@"
impactwatch dashboards --catalog "$CATALOG" --out "$OUT_DIR/grafana" \
  --prometheus-url "$PROMETHEUS_URL" --dashboards-path "$GRAFANA_DASHBOARDS_PATH"
# Grafana logs an error for each provisioning folder it looks for and does not find.
mkdir -p "$OUT_DIR/grafana/provisioning/plugins" "$OUT_DIR/grafana/provisioning/alerting"
