#!/bin/sh
# crd bug: two trees of one job pre-dumped into a store with their own
# writers, then dumped into one generation (what the node agents of a
# multi-node checkpoint would do).  The second pre-dump goes to the next
# generation (the first left a partial one), so the dump of generation N
# does not find that writer's pre-dump and fails on the tree's tracker:
#   Error: pid P fd 19936: unsupported file type anon_inode:[userfaultfd]
# and the tree cannot be dumped at all until a dump adopts its tracker.
# Also: a second pre-dump of a tree fails (EBUSY) and leaves a second
# userfaultfd in it.  Usage (root): predump-two-writers.sh [BUILDDIR]
CRD=${1:-$(dirname "$0")/../../..}/crd/crd
S=$(mktemp -d /tmp/crd-repro-XXXXXX)
for w in a b; do
	python3 -c 'import time
b = bytearray(4 << 20)
while True:
    for i in range(0, len(b), 4096): b[i] = (b[i] + 1) % 256
    time.sleep(0.05)' </dev/null >/dev/null 2>&1 &
	eval P$w=$!
done
sleep 0.3
rc=0
$CRD pre-dump -t $Pa --store $S --job j --writer a || rc=1
$CRD pre-dump -t $Pb --store $S --job j --writer b || rc=1
ls $S/jobs/j
for w in a b; do
	eval P=\$P$w
	$CRD dump -t $P --store $S --job j --writer $w --generation 1 --no-commit \
		--leave-running || { echo "dump of writer $w failed"; rc=1; }
done
kill -9 $Pa $Pb
rm -rf "$S"
[ $rc = 0 ] && echo "OK: fixed" || echo "BUG reproduced"
exit $rc
