"""The JSON plumbing the servers share (http.py): a client that goes away mid-request."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from .test_demo import Running, save_tiny_model


def test_a_client_resetting_its_connection_costs_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    running = Running(save_tiny_model(tmp_path / "m"))
    requests = [
        # a body announced far longer than what comes (the POST's own handling sees the reset)
        b"POST /translate?mode=eval HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        b"Content-Length: 5000000\r\n\r\n" + b"\x89PNG\r\n\x1a\n" * 1000,
        b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nAcc",  # headers cut short (the server's own)
    ]
    try:
        err = ""
        for count, request in enumerate(requests, 1):
            conn = socket.create_connection(("127.0.0.1", running.port), timeout=10)
            conn.sendall(request)
            time.sleep(0.1)  # the server is reading by now (a reset before would do as well)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()
            deadline = time.monotonic() + 10
            while err.count("\n") < count and time.monotonic() < deadline:
                time.sleep(0.02)
                err += capsys.readouterr().err
        lines = err.splitlines()
        assert len(lines) == 2, err
        assert "Traceback" not in err
        assert all(line.startswith("127.0.0.1:") and "ConnectionResetError" in line for line in lines), err
        assert "during a translation" in lines[0] and "during a request" in lines[1]
    finally:
        running.close()
