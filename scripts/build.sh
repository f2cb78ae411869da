#!/bin/sh
# Build crjob in the source tree.
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure -q
make -j"$(nproc)" >/dev/null
