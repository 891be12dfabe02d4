#!/usr/bin/env bash
# Installs Debian's Fashion-MNIST package when it is missing (never fatal): the toolkit works
# without it; the training experiments and the Fashion-MNIST figures need it.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -d "$dir" ] && ls "$dir"/*train-images* >/dev/null 2>&1; then
  exit 0
fi
exec bash "$(dirname "$0")/apt_install.sh" "the Fashion-MNIST experiments" dataset-fashion-mnist
