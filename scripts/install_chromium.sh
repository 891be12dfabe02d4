#!/usr/bin/env bash
# Installs Debian's headless Chromium and its WebDriver when missing and apt-get is available.
# Never fatal: only the atlas browser test (tests/test_atlas_browser.py) and the atlas
# screenshots need them; without them that test is skipped and says why.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; chromium not installed (only the atlas browser test needs it)"
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "note: not root and no sudo; install with: apt-get install chromium chromium-driver"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null 2>&1 || echo "note: apt-get update failed"
$sudo apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
  || echo "note: could not install chromium chromium-driver; the atlas browser test will be skipped"
exit 0
