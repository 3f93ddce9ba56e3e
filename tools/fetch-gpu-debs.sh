#!/bin/sh
# Downloads (does not install) the Debian C libraries that `make gpu-check` needs on the lent GPU
# machine, which has PyTorch with CUDA but no Debian -dev packages and no network. They land in
# .deb/ (git-ignored) and travel with the working tree (`carry: [".deb"]`).
set -eu
cd "$(dirname "$0")/.."
mkdir -p .deb
cd .deb
apt-get download \
  libmicrohttpd-dev libmicrohttpd12 libcjson-dev libcjson1 libstb-dev libstb0 \
  libjpeg62-turbo-dev libjpeg62-turbo libsentencepiece-dev libsentencepiece0 \
  libgnutls30 libnettle8 libhogweed6 libp11-kit0 libtasn1-6 libidn2-0 libunistring2 libgmp10 libffi8 \
  wrk libluajit-5.1-2
# The tokenizer travels too (the device machine does not get ../shared); .deb/ is git-ignored.
cp ../../shared/model/google_sp.model . 2>/dev/null || cp "${SHARED:-../../shared}/model/google_sp.model" .
ls -la
