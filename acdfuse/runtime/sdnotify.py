"""systemd's readiness protocol (sd_notify), so a ``Type=notify`` unit is ready once the drive is mounted.

The service manager names a datagram socket in $NOTIFY_SOCKET (read at the command line edge and
passed in here); a message is newline separated ``KEY=VALUE`` lines. A name starting with '@' is in the
abstract namespace. A few lines of socket code: no dependency for this.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(address: str, message: str) -> bool:
    """Send ``message`` to the notify socket at ``address``; False (logged) when it cannot be sent."""
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot tell the service manager (NOTIFY_SOCKET=%s): %s", address, exc)
        return False
    return True


def ready_notifier(address: str | None, mountpoint: str) -> Callable[[], None] | None:
    """What to call once the mount is up: READY=1 to the service manager, or None without one."""
    if not address:
        return None

    def ready() -> None:
        notify(address, f"READY=1\nMAINPID={os.getpid()}\nSTATUS=mounted at {mountpoint}")

    return ready
