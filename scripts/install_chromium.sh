#!/usr/bin/env bash
# Installs Debian's headless Chromium and its WebDriver when missing (never fatal): only the atlas
# browser test (tests/test_atlas_browser.py) and the atlas screenshots need them.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
exec bash "$(dirname "$0")/apt_install.sh" "the atlas browser test" chromium chromium-driver
