"""sd_notify: tell systemd that the daemon is ready, alive, busy with what, and stopping.

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET`
(a leading '@' means an abstract socket). Without that variable every call is a no-op, so the daemon
behaves the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str | None) -> str | bytes | None:
    """Given the value of $NOTIFY_SOCKET, return the address to send to (bytes for abstract), or None."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Given the environment and our pid, return how often to send WATCHDOG=1 (seconds), or None.

    systemd asks for a ping at least every WATCHDOG_USEC; sending at half of it leaves room for a slow tick.
    WATCHDOG_PID, when set, must name this process.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """A connection-less sender of sd_notify messages."""

    def __init__(self, notify_socket: str | None):
        """Given the value of $NOTIFY_SOCKET (or None), return a notifier that sends there (or nowhere)."""
        self._address = socket_address(notify_socket)
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls) -> Notifier:
        """Return a notifier for $NOTIFY_SOCKET of this process."""
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """Given `KEY=value` lines, send them as one datagram; return whether it was sent.

        A failure is logged, never raised: losing a status line must not stop the daemon.
        """
        if self._socket is None or self._address is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as error:
            log.warning("event=sd_notify_failed error=%r", str(error))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Say the daemon is up (READY=1), with an optional status line."""
        return self.send("READY=1", *self._status(status))

    def status(self, status: str) -> bool:
        """Given a one-line status, show it in `systemctl status`."""
        return self.send(*self._status(status))

    def watchdog(self) -> bool:
        """Ping the systemd watchdog (WATCHDOG=1)."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """Say the configuration is being reloaded (RELOADING=1)."""
        return self.send("RELOADING=1")

    def stopping(self, status: str = "") -> bool:
        """Say the daemon is shutting down (STOPPING=1)."""
        return self.send("STOPPING=1", *self._status(status))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @staticmethod
    def _status(status: str) -> tuple[str, ...]:
        return (f"STATUS={status.replace(chr(10), ' ')}",) if status else ()
