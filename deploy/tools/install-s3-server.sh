#!/usr/bin/env bash
# Builds the S3-compatible server the test suite runs for the lake destination: VersityGW (Apache-2.0)
# with its POSIX backend, from the Go module proxy, into .local/tools/bin. Built once and kept; the
# test session runs this itself. (MinIO is AGPL; VersityGW is a real gateway, not a mock.)
set -euo pipefail
VERSITYGW_VERSION=v1.8.0
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/.local/tools/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go
  export GOTOOLCHAIN=auto
fi

built() {  # the module version a Go binary was built from
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3 }'
}

if [ "$(built "$BIN/versitygw")" != "$VERSITYGW_VERSION" ]; then
  echo "building versitygw $VERSITYGW_VERSION from the Go module proxy ..."
  GOBIN="$BIN" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
