#!/usr/bin/env bash
# Builds the tools that check the deployment files offline (no Docker engine is needed), from the Go
# module proxy, into .local/tools: helm (lint, template) and Docker Compose (config), the latter as a
# Docker CLI plugin. Each is built once and kept; the test suite runs this itself.
set -euo pipefail
HELM_VERSION=v3.19.0
COMPOSE_VERSION=v5.7.0
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

if ! "$PLUGINS/docker-compose" version 2>/dev/null | grep -q "${COMPOSE_VERSION#v}"; then
  echo "building docker compose $COMPOSE_VERSION from the Go module proxy ..."
  GOBIN="$BIN" go install -ldflags "-X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
    "github.com/docker/compose/v5/cmd@$COMPOSE_VERSION"
  mv "$BIN/cmd" "$PLUGINS/docker-compose"
fi
