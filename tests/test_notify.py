"""sd_notify over a real datagram socket, including abstract '@' addresses."""

import os
import socket

import pytest

from comparimg.notify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def test_messages_reach_a_filesystem_socket(listener):
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.ready("watching 3 roots")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 3 roots"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_messages_reach_an_abstract_socket():
    name = f"comparimg-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier("@" + name)
        assert notifier.status("scanning\nnow")
        assert sock.recv(4096) == b"STATUS=scanning now"
        notifier.close()
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier(None)
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert not notifier.watchdog()
    notifier.close()
    assert "sd_notify_failed" in caplog.text


def test_socket_address_forms():
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("/run/x") == "/run/x"
    assert socket_address("relative") is None
    assert socket_address("") is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
