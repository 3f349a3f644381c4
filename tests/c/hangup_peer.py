#!/usr/bin/env python3
"""A participant that takes part of a file and hangs up cleanly (tests/c/peer_gone.c).

Listens on 127.0.0.1, prints its MSRP URI, answers every SEND head it sees with 200 until it
has read N bytes, then shuts its side (FIN) and closes at once; the sender's next writes meet a
reset connection (EPIPE, which raises SIGPIPE unless the writing thread blocks it).

    hangup_peer.py N
"""
import re
import socket
import sys
import time

HEAD = re.compile(rb"MSRP (\S+) SEND\r\nTo-Path: (\S+)\r\nFrom-Path: (\S+)\r\n")


def main():
    limit = int(sys.argv[1])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    print(f"msrp://127.0.0.1:{ls.getsockname()[1]}/pg;tcp", flush=True)
    c, _ = ls.accept()
    got, tail = 0, b""
    while got < limit:
        data = c.recv(65536)
        if not data:
            break
        got += len(data)
        window = tail + data
        for m in HEAD.finditer(window):
            tid, to, frm = m.groups()
            c.sendall(b"MSRP " + tid + b" 200 OK\r\nTo-Path: " + frm + b"\r\nFrom-Path: " + to
                      + b"\r\n-------" + tid + b"$\r\n")
        # Keep a head cut by the read for the next round (a head seen twice gets a second 200,
        # which the sender tolerates).
        tail = window[-400:]
    c.shutdown(socket.SHUT_WR)
    c.close()
    time.sleep(5)


if __name__ == "__main__":
    main()
