#!/bin/sh
# Runs `fcsim bench io --tgt`: fcsim's direct and virtual-LU paths against tgt serving a
# file over iSCSI on loopback, measured in turns (BENCHMARKS.md).
#
# Installs what the reference needs from Debian packages when missing (tgt: the tgtd
# iSCSI target and tgtadm), builds fcsim in release mode, and passes its arguments on:
#
#   scripts/bench-tgt.sh --count 5000 --json io-tgt.json
#
# Needs root: tgtd is started privately (its own portal port and control socket, a
# sparse 1 GiB file LU in a temporary directory) and stopped when the bench ends.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench-tgt: tgtd needs root" >&2
    exit 1
fi
if ! command -v tgtd >/dev/null 2>&1 && [ ! -x /usr/sbin/tgtd ]; then
    echo "bench-tgt: installing tgt" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tgt >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tgt >&2; }
fi
cargo build --release --quiet
exec target/release/fcsim bench io --tgt "$@"
