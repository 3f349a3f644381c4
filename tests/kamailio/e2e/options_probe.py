#!/usr/bin/env python3
"""Sends SIP OPTIONS to Kamailio over UDP every INTERVAL seconds until STOPFILE exists and prints
`sent N answered M lost L p50_ms X p99_ms Y max_ms Z` (one line, at the end).

usage: options_probe.py PORT STOPFILE [INTERVAL]"""
import os
import select
import socket
import sys
import time

port, stopfile = int(sys.argv[1]), sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lp = s.getsockname()[1]
pending = {}  # cseq -> send time
rtts = []
lost = 0
sent = 0
next_send = time.monotonic()
while True:
    now = time.monotonic()
    if now >= next_send:
        if os.path.exists(stopfile):
            break
        sent += 1
        msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-probe-{sent}\r\n"
               f"From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1:{port}>\r\n"
               f"Call-ID: probe-{os.getpid()}@127.0.0.1\r\nCSeq: {sent} OPTIONS\r\n"
               f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        pending[sent] = now
        next_send = now + interval
    # Requests unanswered for 1 s are lost.
    for k in [k for k, t in pending.items() if now - t > 1.0]:
        del pending[k]
        lost += 1
    r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
    if r:
        data = s.recv(65535).decode(errors="replace")
        t = time.monotonic()
        for line in data.split("\r\n"):
            if line.lower().startswith("cseq:"):
                k = int(line.split()[1])
                if k in pending:
                    rtts.append((t - pending.pop(k)) * 1000.0)
# Wait briefly for the last answers.
deadline = time.monotonic() + 1.0
while pending and time.monotonic() < deadline:
    r, _, _ = select.select([s], [], [], 0.1)
    if r:
        data = s.recv(65535).decode(errors="replace")
        t = time.monotonic()
        for line in data.split("\r\n"):
            if line.lower().startswith("cseq:"):
                k = int(line.split()[1])
                if k in pending:
                    rtts.append((t - pending.pop(k)) * 1000.0)
lost += len(pending)
rtts.sort()
def pct(p):
    return rtts[min(len(rtts) - 1, int(len(rtts) * p))] if rtts else -1.0
print(f"sent {sent} answered {len(rtts)} lost {lost} p50_ms {pct(0.5):.2f} "
      f"p99_ms {pct(0.99):.2f} max_ms {rtts[-1] if rtts else -1.0:.2f}")
