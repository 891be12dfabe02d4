#!/usr/bin/env bash
# Installs Debian packages with apt-get when it is available; never fatal.
# Usage: apt_install.sh "<what needs them>" PACKAGE [PACKAGE ...]
set -u
why=$1; shift
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; $* not installed (only $why needs it)"
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "note: not root and no sudo; install with: apt-get install $*"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null 2>&1 || echo "note: apt-get update failed"
$sudo apt-get install -y -q "$@" >/dev/null 2>&1 \
  || echo "note: could not install $*; $why will be skipped"
exit 0
