#!/bin/sh
# crd bug: a second pre-dump of a tree (before any dump) fails with EBUSY and
# leaves a second userfaultfd in the process: a failed pre-dump does not
# release the tree "exactly as it was".  Usage (root): predump-twice.sh [BUILDDIR]
CRD=${1:-$(dirname "$0")/../../..}/crd/crd
S=$(mktemp -d /tmp/crd-repro-XXXXXX)
python3 -c 'import time
while True: time.sleep(0.05)' </dev/null >/dev/null 2>&1 &
P=$!
sleep 0.3
$CRD pre-dump -t $P --store $S --job j >/dev/null
before=$(ls -l /proc/$P/fd | grep -c userfaultfd)
$CRD pre-dump -t $P --store $S --job j
after=$(ls -l /proc/$P/fd | grep -c userfaultfd)
echo "userfaultfds in the tree: $before after the first pre-dump, $after after the second"
kill -9 $P
rm -rf "$S"
[ "$after" = "$before" ] && { echo "OK: fixed"; exit 0; }
echo "BUG reproduced"
exit 1
