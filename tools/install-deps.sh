#!/bin/sh
# Installs everything cloob-server needs to build, test and serve on Debian 12 (bookworm), and makes
# OpenBLAS the system BLAS: Debian's libtorch calls whatever libblas.so.3 the alternatives system
# points at, and with the reference BLAS a ViT-B/16 forward pass is ~50x slower.
# Idempotent; needs root (or sudo). Set CLOOB_DEPS_MINIMAL=1 to skip the test and benchmark tools.
set -eu

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

BUILD_PKGS="build-essential pkg-config ca-certificates
  libtorch-dev python3-torch
  libmicrohttpd-dev libcjson-dev libstb-dev libjpeg62-turbo-dev libsentencepiece-dev
  libopenblas0-pthread"
TEST_PKGS="python3 python3-pytest python3-numpy python3-pil python3-torchvision python3-sentencepiece
  python3-requests python3-jsonschema python3-yaml
  clang libclang-rt-14-dev wrk curl"

pkgs="$BUILD_PKGS"
if [ "${CLOOB_DEPS_MINIMAL:-0}" != 1 ]; then pkgs="$pkgs $TEST_PKGS"; fi

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing:$missing"
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing
else
  echo "install-deps: all Debian packages present"
fi

# Node.js runs the OpenAPI 3.1 document validator of the end-to-end tests (tests/e2e/package.json,
# pinned by its package-lock.json). Debian's nodejs/npm only when the machine has no node at all.
if [ "${CLOOB_DEPS_MINIMAL:-0}" != 1 ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    $SUDO apt-get install -y -q --no-install-recommends nodejs npm
  fi
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -d "$here/tests/e2e/node_modules/@seriousme/openapi-schema-validator" ]; then
    (cd "$here/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# OpenBLAS as libblas.so.3 / liblapack.so.3 (the pthread flavour: libtorch runs one GEMM at a time
# from its own thread pool, so OpenBLAS's own threads are what parallelise the big matmuls).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  target=/usr/lib/$arch/openblas-pthread/$lib
  if [ -e "$target" ]; then
    $SUDO update-alternatives --set "$lib-$arch" "$target" >/dev/null
  fi
done
echo "install-deps: libblas.so.3 -> $(readlink -f /usr/lib/$arch/libblas.so.3)"
