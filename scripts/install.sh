#!/usr/bin/env bash
# Installs acdfuse on a fresh Debian/Ubuntu machine into ./.venv.
#   scripts/install.sh         runtime only: fuse3 (libfuse3, which the mount loads through mfusepy, and
#                              fusermount3) and libfuse2 (mfusepy's fallback where libfuse 3 is missing)
#   scripts/install.sh --dev   also the test extra, the tools the mount tests drive (rsync, sqlite3, git,
#                              curl, rclone) and ./.venv-acdcli with the acd_cli 0.3.2 peer client
# Safe to re-run. Uses sudo only when not already root.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
install_apt() {
    if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# libfuse2 is called libfuse2t64 since Debian 13 / Ubuntu 24.04
if ! /sbin/ldconfig -p | grep -q 'libfuse.so.2'; then
    install_apt libfuse2 || install_apt libfuse2t64
fi
wanted=(fuse3)
[ "$dev" = 1 ] && wanted+=(rsync sqlite3 git curl rclone tar)
missing=()
for p in "${wanted[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv python3-pip)
fi
[ "${#missing[@]}" -eq 0 ] || install_apt "${missing[@]}"

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[test]'
    # The original client: an outside check of our protocol fidelity (tests/peer, benchmarks).
    if [ ! -x .venv-acdcli/bin/acd_cli.py ]; then
        python3 -m venv .venv-acdcli
        .venv-acdcli/bin/python -m pip install -q 'acdcli==0.3.2'
    fi
else
    .venv/bin/python -m pip install -q .
fi
echo "install: done (.venv/bin/acdfuse)"
