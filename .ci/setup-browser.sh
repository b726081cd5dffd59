#!/usr/bin/env bash
# Debian's Chromium (and its driver) for the browser tests (tests/test_report_browser.py); playwright drives
# this binary, so nothing is downloaded by playwright. Idempotent and quiet.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium chromium-driver >/dev/null
