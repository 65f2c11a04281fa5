#!/usr/bin/env bash
# Installs what `nox -s deploy` runs, from Debian's packages only, when it is missing:
# nginx (the TLS proxy under test), caddy (`caddy validate` of deploy/Caddyfile),
# openssl (the self-signed test certificate) and systemd-analyze (deploy/boba.service).
# Package scripts are not allowed to start the services (the tests run their own nginx
# on loopback ports, never the system one).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin, outside a user's PATH
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup-deploy: ${missing[*]} missing and this user cannot install packages" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Keep package scripts from starting nginx/caddy on ports 80/443 (restored afterwards).
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
fi
cleanup() { if [ -n "$added_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
for tool in nginx caddy openssl systemd-analyze; do
    command -v "$tool" >/dev/null 2>&1 || { echo "setup-deploy: $tool still missing" >&2; exit 1; }
done
