#!/usr/bin/env python3
"""Smoke test of tests/kamailio/msrp-relay.cfg: Debian's Kamailio msrp.so as an MSRP relay.

Proves the relay recipe of tests/kamailio/README.md with a tiny MSRP client (standard library
only):
  1. client A connects, AUTHs (401 challenge, digest answer) and gets its Use-Path;
  2. client B connects and SENDs through the relay to A (To-Path: <Use-Path> <A's URI>);
  3. A receives the SEND intact, answers 200 and a success REPORT, which reach B;
  4. 20 pipelined chunks with 10240-byte bodies pass in order; a frame of MAX_FRAME bytes
     passes, one byte more gets 413; an AUTH with Expires gets 423/400 instead of a crash;
     a SEND to an unknown relay session gets 481; a wrong password gets 401 again.

Usage: relay_smoke.py [--port PORT]   (without --port it starts the relay with run-relay.sh and
stops it by PID at the end). Exit status 0 when every check passed.
"""

import argparse
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
USER, REALM, PASSWORD = "msrpcast", "msrpcast-relay", "relay-secret"
TIMEOUT = 5.0


class Peer:
    """One MSRP endpoint on a TCP connection to the relay."""

    def __init__(self, name, relay_port):
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", relay_port), timeout=TIMEOUT)
        port = self.sock.getsockname()[1]
        # The URI names the connection's own local port: the relay reaches this peer by
        # matching host:port against the remote address of its open connections.
        self.uri = f"msrp://127.0.0.1:{port}/{name}{secrets.token_hex(4)};tcp"
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, headers, body=b"", tid=None, flag=b"$"):
        tid = tid or secrets.token_hex(8)
        head = f"MSRP {tid} {method}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        frame = head.encode()
        if body:
            frame += b"\r\n" + body + b"\r\n"
        frame += f"-------{tid}".encode() + flag + b"\r\n"
        self.send(frame)
        return tid, len(frame)

    def recv_frame(self, timeout=TIMEOUT):
        """Returns (first_line, headers dict (last value wins), body bytes) or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise EOFError(f"{self.name}: relay closed the connection")
            self.buf += data

    def _take(self):
        eol = self.buf.find(b"\r\n")
        if eol < 0:
            return None
        first = self.buf[:eol].decode()
        m = re.match(r"MSRP (\S+) ", first)
        if not m:
            raise ValueError(f"{self.name}: bad start line {first!r}")
        end = re.compile(rb"\r\n-------" + re.escape(m.group(1).encode()) + rb"([$+#])\r\n")
        em = end.search(self.buf, eol)
        if not em:
            return None
        frame = self.buf[: em.end()]
        self.buf = self.buf[em.end():]
        head, sep, body = frame[eol + 2: em.start() + 2].partition(b"\r\n\r\n")
        if sep:
            body = body[:-2]
        else:
            head, body = frame[eol + 2: em.start()], b""
        headers = {}
        for line in head.decode().split("\r\n"):
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return first, headers, body

    def respond(self, first, headers, code=200, comment="OK"):
        tid = first.split()[1]
        frame = (f"MSRP {tid} {code} {comment}\r\nTo-Path: {headers['from-path']}\r\n"
                 f"From-Path: {self.uri}\r\n-------{tid}$\r\n")
        self.send(frame.encode())


def digest(challenge, uri, password=PASSWORD, user=USER):
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    ha1 = hashlib.md5(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"AUTH:{uri}".encode()).hexdigest()
    nc, cnonce = "00000001", secrets.token_hex(8)
    if "qop" in params:
        resp = hashlib.md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = hashlib.md5(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
        extra = ""
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}"{extra}')


# The largest whole frame (start line to end-line CRLF) the relay cfg can handle.
MAX_FRAME = 11238


def send_sized(peer, to_path, total):
    """Sends a SEND frame of exactly `total` bytes; returns (transaction id, length)."""
    tid, body_len = secrets.token_hex(8), 0
    for _ in range(5):
        head = (f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {peer.uri}\r\n"
                f"Message-ID: sized{total}\r\nByte-Range: 1-{body_len}/{body_len}\r\n"
                f"Content-Type: application/octet-stream\r\n")
        body_len = total - len(head) - 4 - len(f"-------{tid}$\r\n")
    t, flen = peer.request("SEND", [("To-Path", to_path), ("From-Path", peer.uri), ("Message-ID", f"sized{total}"),
                                    ("Byte-Range", f"1-{body_len}/{body_len}"),
                                    ("Content-Type", "application/octet-stream")],
                           b"x" * body_len, tid=tid)
    assert flen == total, (flen, total)
    return t, flen


CHECKS = []


def check(cond, what):
    CHECKS.append((bool(cond), what))
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        raise AssertionError(what)


def auth(peer, relay_uri, password=PASSWORD, user=USER):
    """AUTH as RFC 4976 §5: returns the Use-Path URI (or None when refused)."""
    hdrs = [("To-Path", relay_uri), ("From-Path", peer.uri)]
    peer.request("AUTH", hdrs)
    first, h, _ = peer.recv_frame()
    check(first.split()[2] == "401" and "www-authenticate" in h,
          f"{peer.name}: first AUTH answered 401 with WWW-Authenticate ({h.get('www-authenticate')})")
    peer.request("AUTH", hdrs + [("Authorization", digest(h["www-authenticate"], relay_uri, password, user))])
    first, h, _ = peer.recv_frame()
    if first.split()[2] != "200":
        return first, None
    return first, h


def run(port):
    relay_uri = f"msrp://127.0.0.1:{port};tcp"
    # Wrong password: challenged again.
    z = Peer("z", port)
    first, _ = auth(z, relay_uri, password="wrong")
    check(first.split()[2] == "401", f"wrong password refused with {first.split()[2]}")
    z.sock.close()
    y = Peer("y", port)
    first, _ = auth(y, relay_uri, user="someone-else")
    check(first.split()[2] == "403", f"another user refused with {first.split()[2]}")
    y.sock.close()

    # Expires in an authenticated AUTH: answered by the cfg (msrp.so 5.6.3 would crash on it).
    for value, code, hdr in (("30", "423", "min-expires"), ("7200", "423", "max-expires"), ("600", "400", None)):
        x = Peer("x", port)
        hdrs = [("To-Path", relay_uri), ("From-Path", x.uri), ("Expires", value)]
        x.request("AUTH", hdrs)
        first, h, _ = x.recv_frame()
        x.request("AUTH", hdrs + [("Authorization", digest(h["www-authenticate"], relay_uri))])
        first, h, _ = x.recv_frame()
        check(first.split()[2] == code and (hdr is None or hdr in h),
              f"AUTH with Expires: {value} answered {first.split(maxsplit=2)[2]} {hdr and h.get(hdr) or ''}")
        x.sock.close()

    a = Peer("a", port)
    first, h = auth(a, relay_uri)
    check(h is not None and "use-path" in h, f"A: AUTH accepted: {first} Use-Path: {h and h.get('use-path')} Expires: {h and h.get('expires')}")
    use_path = h["use-path"]
    check(re.fullmatch(rf"msrp://127\.0\.0\.1:{port}/[^;/ ]+;tcp", use_path), "Use-Path is msrp://127.0.0.1:PORT/<session>;tcp")

    b = Peer("b", port)
    body = b"hello through kamailio's msrp relay\r\n-------not-an-end-line\r\n"
    msg_id = secrets.token_hex(6)
    to_path = f"{use_path} {a.uri}"
    tid, _ = b.request("SEND", [("To-Path", to_path), ("From-Path", b.uri), ("Message-ID", msg_id),
                               ("Success-Report", "yes"), ("Byte-Range", f"1-{len(body)}/{len(body)}"),
                               ("Content-Type", "text/plain")], body)
    got = a.recv_frame()
    check(got is not None, "A received the SEND")
    first, h, rbody = got
    check(first == f"MSRP {tid} SEND", f"A: start line kept ({first})")
    check(h["to-path"] == a.uri, f"A: To-Path is A's URI ({h['to-path']})")
    check(h["from-path"] == f"{use_path} {b.uri}", f"A: From-Path is '<relay> <B>' ({h['from-path']})")
    check(rbody == body, "A: body intact")
    a.respond(first, h)
    rtid = secrets.token_hex(8)
    a.request("REPORT", [("To-Path", h["from-path"]), ("From-Path", a.uri), ("Message-ID", msg_id),
                         ("Byte-Range", f"1-{len(body)}/{len(body)}"), ("Status", "000 200 OK")], tid=rtid)

    seen = []
    while True:
        f = b.recv_frame(timeout=1.0)
        if f is None:
            break
        seen.append(f)
    oks = [f for f in seen if f[0].startswith(f"MSRP {tid} 200")]
    reports = [f for f in seen if f[0] == f"MSRP {rtid} REPORT"]
    check(len(oks) == 1, f"B: exactly one 200 for the SEND (the relay's, hop by hop); got {len(oks)}")
    check(oks and oks[0][1]["to-path"] == b.uri, "B: the 200's To-Path is B's URI")
    check(len(reports) == 1 and reports[0][1].get("status") == "000 200 OK",
          "B: the success REPORT arrived")
    check(reports and reports[0][1]["to-path"] == b.uri and reports[0][1]["from-path"] == f"{use_path} {a.uri}",
          "B: REPORT To-Path is B, From-Path '<relay> <A>'")
    check(len(seen) == len(oks) + len(reports), f"B: nothing else arrived ({[f[0] for f in seen]})")

    # Pipelined chunks at the largest body msrp.so forwards.
    chunk, n = 10240, 20
    data = os.urandom(chunk * n)
    msg_id = secrets.token_hex(6)
    tids, max_frame = [], 0
    for i in range(n):
        t, flen = b.request("SEND", [("To-Path", to_path), ("From-Path", b.uri), ("Message-ID", msg_id),
                                     ("Success-Report", "no"), ("Failure-Report", "no"),
                                     ("Byte-Range", f"{i * chunk + 1}-{(i + 1) * chunk}/{len(data)}"),
                                     ("Content-Type", "application/octet-stream")],
                            data[i * chunk:(i + 1) * chunk], flag=b"$" if i == n - 1 else b"+")
        tids.append(t)
        max_frame = max(max_frame, flen)
    parts = []
    for i in range(n):
        f = a.recv_frame()
        if f is None or f[0] != f"MSRP {tids[i]} SEND":
            check(False, f"A: chunk {i + 1}/{n} in order (got {f and f[0]})")
        parts.append(f[2])
    check(b"".join(parts) == data, f"A: {n} chunks of {chunk} bytes intact (frames up to {max_frame} bytes)")
    oks = set()
    while len(oks) < n:
        f = b.recv_frame(timeout=2.0)
        if f is None:
            break
        oks.add(f[0].split()[1])
    check(oks == set(tids), f"B: a 200 for each of the {n} chunks")

    # The frame size limit: the largest frame the relay forwards, and one byte more.
    for total, passes in ((MAX_FRAME, True), (MAX_FRAME + 1, False)):
        t, flen = send_sized(b, to_path, total)
        f = b.recv_frame()
        if passes:
            check(f is not None and f[0].startswith(f"MSRP {t} 200"), f"B: {flen}-byte frame accepted ({f and f[0]})")
            g = a.recv_frame()
            check(g is not None and g[0] == f"MSRP {t} SEND", f"A: {flen}-byte frame delivered")
        else:
            check(f is not None and f[0].startswith(f"MSRP {t} 413"), f"B: {flen}-byte frame refused ({f and f[0]})")
            check(a.recv_frame(timeout=0.5) is None, f"A: the {flen}-byte frame was not delivered")

    # A SEND to a relay session nobody AUTHed for.
    bogus = f"msrp://127.0.0.1:{port}/nosuchsession;tcp {a.uri}"
    t, _ = b.request("SEND", [("To-Path", bogus), ("From-Path", b.uri), ("Message-ID", "x1"),
                              ("Byte-Range", "1-2/2"), ("Content-Type", "text/plain")], b"hi")
    f = b.recv_frame()
    check(f is not None and f[0].startswith(f"MSRP {t} 481"), f"B: unknown session answered {f and f[0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, help="an already running relay's port")
    args = ap.parse_args()
    pid = relay_dir = None
    port = args.port
    if port is None:
        out = subprocess.run([os.path.join(HERE, "run-relay.sh"), "start"], check=True,
                             capture_output=True, text=True).stdout
        env = dict(line.split("=", 1) for line in out.split())
        env = {k: v.strip("'") for k, v in env.items()}
        pid, port = env["RELAY_PID"], int(env["RELAY_PORT"])
        relay_dir = env["RELAY_DIR"]
        print(f"relay: pid {pid}, port {port}, log {env['RELAY_LOG']}", flush=True)
    try:
        run(port)
    except (AssertionError, EOFError, ValueError, OSError) as e:
        print(f"relay smoke FAILED: {e}", file=sys.stderr)
        return 1  # the relay's folder stays, for its kamailio.log
    finally:
        if pid:
            subprocess.run([os.path.join(HERE, "run-relay.sh"), "stop", pid], check=False)
    if relay_dir:
        shutil.rmtree(relay_dir, ignore_errors=True)
    print(f"relay smoke passed ({len(CHECKS)} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
