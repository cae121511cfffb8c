#!/usr/bin/env bash
# Installs the system tools the local stack needs when they are missing: a Java 17+ runtime for Kafka,
# Maven to fetch Kafka's jars from Maven Central, Node.js and npm to build the tracking script and run
# the browser and Node SDK tests, Debian's Chromium for those browser tests, wrk for `make bench`'s
# single-event load, and PostgreSQL and MariaDB for the import tests (servers of their own, started by
# the tests). Everything else comes from PyPI into .venv and from npm into sdks/js/node_modules.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v mariadbd >/dev/null || missing+=(mariadb-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
