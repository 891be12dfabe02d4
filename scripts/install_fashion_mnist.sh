#!/usr/bin/env bash
# Installs Debian's Fashion-MNIST package when it is missing and apt-get is available.
# Never fatal: the toolkit works without it (only the training experiments need it).
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -d "$dir" ] && ls "$dir"/*train-images* >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; Fashion-MNIST not installed (only needed by experiments/train_zfnet.py)"
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "note: not root and no sudo; install Fashion-MNIST with: apt-get install dataset-fashion-mnist"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null 2>&1 || echo "note: apt-get update failed"
$sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
  || echo "note: could not install dataset-fashion-mnist; the training experiments will be skipped"
exit 0
