#!/usr/bin/env bash
# Debian packages the embedded path needs: EGL/Mesa for headless MuJoCo rendering.
# Installs them when missing and we may (root + apt-get); otherwise says what to install.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so.0' || missing+=(libegl-mesa0)
ldconfig -p 2>/dev/null | grep -q 'libOpenGL.so.0' || missing+=(libopengl0)
ldconfig -p 2>/dev/null | grep -q 'libgbm.so.1' || missing+=(libgbm1)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing Debian packages for headless rendering: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "[setup] headless MuJoCo rendering needs these Debian packages: ${missing[*]}" >&2
  echo "[setup] install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
