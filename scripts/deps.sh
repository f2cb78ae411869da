#!/bin/sh
# Install every package crjob needs to build and test (Debian 12).
set -e
export DEBIAN_FRONTEND=noninteractive
PKGS="autoconf automake libtool pkg-config gcc make binutils python3 \
	protobuf-c-compiler libprotobuf-c-dev libcap-dev libnl-3-dev libnl-route-3-dev \
	libxxhash-dev libzstd-dev iproute2 nftables procps openmpi-bin libopenmpi-dev \
	libevent-dev libssl-dev munge libmunge-dev libhwloc-dev hwloc \
	slurm-wlm slurm-client libslurm-dev libpmix-dev mpich libmpich-dev"
missing=
for p in $PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
