"""stdin/stdout <-> one TCP connection: QEMU's `guestfwd=…-cmd:` runs this per guest
connection, so a VM restricted to user-mode networking reaches exactly one host port."""

from __future__ import annotations

import os
import socket
import sys
import threading


def _pump(src: int, dst: socket.socket) -> None:
    while data := os.read(src, 65536):
        dst.sendall(data)
    dst.shutdown(socket.SHUT_WR)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    with socket.create_connection((host, port)) as sock:
        threading.Thread(target=_pump, args=(sys.stdin.fileno(), sock), daemon=True).start()
        out = sys.stdout.fileno()
        while data := sock.recv(65536):
            os.write(out, data)


if __name__ == "__main__":
    main()
