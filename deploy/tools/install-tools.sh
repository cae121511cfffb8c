#!/usr/bin/env bash
# Builds the tools that check the deployment files offline (no Docker engine is needed), from the Go
# module proxy, into .local/tools: helm (lint, template), Docker Compose (config) as a Docker CLI
# plugin, Caddy (the Compose file's TLS proxy: its Caddyfile is adapted in the tests), kube-score (a
# linter of the rendered Kubernetes manifests) and promtool (checks the alerts and fires them on
# made-up series). Each is built once and kept; the test suite runs this itself.
set -euo pipefail
HELM_VERSION=v3.19.0
COMPOSE_VERSION=v2.40.3  # v5 needs a newer Go than this machine's 1.26.8
CADDY_VERSION=v2.10.2  # the version of the Compose file's caddy image
KUBE_SCORE_VERSION=v1.20.0
PROMETHEUS_VERSION=v0.316.0  # the Go module's version of Prometheus 3.16
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="$ROOT/.local/tools"
BIN="$TOOLS/bin"
PLUGINS="$TOOLS/docker/cli-plugins"
mkdir -p "$BIN" "$PLUGINS"

if ! command -v go >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go
  export GOTOOLCHAIN=auto  # Debian's Go fetches the newer toolchain these modules need from the proxy
fi

if ! "$BIN/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION%.*}"; then  # go install builds report major.minor
  echo "building helm $HELM_VERSION from the Go module proxy ..."
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if [ ! -x "$PLUGINS/docker-compose" ]; then
  # `go install …@version` refuses modules whose go.mod has replace/exclude directives, as compose's
  # has: download the module and build it in its own module
  echo "building docker compose $COMPOSE_VERSION from the Go module proxy ..."
  dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  (cd "$dir" && go build -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
    -o "$PLUGINS/docker-compose" ./cmd)
fi

built() {  # the module version a Go binary was built from
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3 }'
}

if [ "$(built "$BIN/caddy")" != "$CADDY_VERSION" ]; then
  echo "building caddy $CADDY_VERSION from the Go module proxy ..."
  GOBIN="$BIN" go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION"
fi

if [ "$(built "$BIN/kube-score")" != "$KUBE_SCORE_VERSION" ]; then
  echo "building kube-score $KUBE_SCORE_VERSION from the Go module proxy ..."
  GOBIN="$BIN" go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

if [ "$(built "$BIN/promtool")" != "$PROMETHEUS_VERSION" ]; then
  echo "building promtool $PROMETHEUS_VERSION from the Go module proxy (a few minutes, once) ..."
  GOBIN="$BIN" go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi
