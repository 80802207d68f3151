#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine:
#   system packages (libfuse2 for fusepy, fuse3 for fusermount3, the tools the mount tests drive),
#   .venv with acdfuse and its test extra, and .venv-acdcli with the acd_cli 0.3.2 peer client.
# Safe to re-run. Uses sudo only when not already root.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

apt_pkgs=(fuse3 rsync sqlite3 git curl rclone tar)
need_update=1
install_apt() {
    if [ "$need_update" = 1 ]; then $SUDO apt-get update -qq; need_update=0; fi
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
# libfuse2 was renamed libfuse2t64 in Debian 13 / Ubuntu 24.04
if ! ldconfig -p | grep -q 'libfuse.so.2'; then
    install_apt libfuse2 || install_apt libfuse2t64
fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv python3-pip)
fi
[ "${#missing[@]}" -eq 0 ] || install_apt "${missing[@]}"

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# The original client, used only as an outside check of protocol fidelity (tests/peer).
[ -x .venv-acdcli/bin/acd_cli.py ] || {
    python3 -m venv .venv-acdcli
    .venv-acdcli/bin/python -m pip install -q 'acdcli==0.3.2'
}
echo "dev-setup: done"
