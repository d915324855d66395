#!/usr/bin/env bash
# Installs the real peers the tests start on loopback: Prometheus (with promtool) and the
# Pushgateway, from Debian's packages. Idempotent: does nothing when they are already present.
set -euo pipefail

needed=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || needed+=(prometheus-pushgateway)
[ ${#needed[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${needed[*]}"
$sudo apt-get update -qq
# The packages' services are never started here: the tests start their own instances.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}"
