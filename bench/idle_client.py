#!/usr/bin/python3
"""bench/idle_client.py: open N keep-alive connections to a server, send one request on each and
read the answer, hold them all idle, then send one more request on every connection and check each
answers 200. Reads the server's VmRSS from /proc/PID/status at each stage. Python stdlib only.

usage: idle_client.py --port P --pid SERVER_PID [--conns 10000] [--hold 10] [--sources 4]

Prints human-readable progress and, last, one line:
  RESULT conns=.. first_ok=.. second_ok=.. errors=.. dropped_idle=.. rss_before_kb=.. rss_held_kb=..
         rss_after_kb=.. connect_s=.. first_s=.. second_s=..
"""
import argparse
import errno
import selectors
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Conn:
    __slots__ = ("sock", "buf", "state", "status", "idx")

    def __init__(self, sock, idx):
        self.sock = sock
        self.buf = b""
        self.state = "connecting"
        self.status = None
        self.idx = idx


def parse_response(buf):
    """Returns (status, consumed) when buf holds one complete response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return (-1, len(buf))
    length = 0
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    total = end + 4 + length
    if len(buf) < total:
        return None
    return (status, total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.1..N")
    ap.add_argument("--inflight", type=int, default=1000, help="max concurrent connects")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-phase time limit (s)")
    ap.add_argument("--path", default="/health/live")
    a = ap.parse_args()

    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
           "User-Agent: hearth-idle-bench\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    errors = {}

    def err(kind):
        errors[kind] = errors.get(kind, 0) + 1

    def log(msg):
        print(msg, flush=True)

    rss_before = rss_kb(a.pid)
    log(f"   server pid {a.pid}: VmRSS before connections {rss_before / 1024:.1f} MB, "
        f"{threads_of(a.pid)} threads")

    conns = []
    live = {}  # fd -> Conn, connections still usable

    def close(c, kind=None):
        if kind:
            err(kind)
        if c.sock.fileno() in live:
            del live[c.sock.fileno()]
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.state = "dead"
        c.sock.close()

    def on_readable(c, phase_done):
        try:
            data = c.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            close(c, "reset")
            return
        except BlockingIOError:
            return
        if not data:
            close(c, "eof" if c.state != "idle" else "dropped_idle")
            return
        if c.state == "idle":
            close(c, "unexpected_data_idle")
            return
        c.buf += data
        r = parse_response(c.buf)
        if r is None:
            return
        status, used = r
        c.buf = c.buf[used:]
        c.status = status
        if status != 200:
            err(f"status_{status}")
        c.state = "idle"
        sel.modify(c.sock, selectors.EVENT_READ, c)
        phase_done.append(c)

    def send_req(c):
        try:
            n = c.sock.send(req)
            if n != len(req):
                close(c, "short_send")
                return False
        except OSError as ex:
            close(c, f"send_{errno.errorcode.get(ex.errno, ex.errno)}")
            return False
        c.state = "waiting"
        return True

    # ---- phase 1: connect + first request, at most `inflight` connects outstanding
    t0 = time.monotonic()
    next_idx = 0
    pending = 0
    done1 = []
    deadline = t0 + a.timeout
    while (next_idx < a.conns or pending) and time.monotonic() < deadline:
        while next_idx < a.conns and pending < a.inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            src = f"127.0.0.{1 + next_idx % max(1, a.sources)}"
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
            except OSError:
                s.close()
                err("bind")
                next_idx += 1
                continue
            c = Conn(s, next_idx)
            next_idx += 1
            rc = s.connect_ex((a.host, a.port))
            if rc not in (0, errno.EINPROGRESS):
                err(f"connect_{errno.errorcode.get(rc, rc)}")
                s.close()
                continue
            conns.append(c)
            live[s.fileno()] = c
            sel.register(s, selectors.EVENT_WRITE, c)
            pending += 1
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            if c.state == "connecting":
                rc = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    close(c, f"connect_{errno.errorcode.get(rc, rc)}")
                    pending -= 1
                    continue
                if send_req(c):
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                else:
                    pending -= 1
            elif c.state == "waiting" and ev & selectors.EVENT_READ:
                on_readable(c, done1)
                if c.state != "waiting":
                    pending -= 1
            elif c.state == "idle" and ev & selectors.EVENT_READ:
                on_readable(c, done1)
    for c in conns:
        if c.state in ("connecting", "waiting"):
            close(c, "timeout_first")
    t1 = time.monotonic()
    first_ok = sum(1 for c in done1 if c.status == 200)
    log(f"   opened {len(conns)} connections, {first_ok} answered 200 in {t1 - t0:.2f} s")

    # ---- phase 2: hold idle; any readability now is the server closing / misbehaving
    held_rss = []
    hold_end = time.monotonic() + a.hold
    while time.monotonic() < hold_end:
        for key, ev in sel.select(timeout=min(1.0, max(0.0, hold_end - time.monotonic()))):
            on_readable(key.data, [])
        held_rss.append(rss_kb(a.pid))
    rss_held = max(held_rss) if held_rss else rss_kb(a.pid)
    idle_live = len(live)
    log(f"   held {idle_live} idle connections for {a.hold:.0f} s: server VmRSS "
        f"{rss_held / 1024:.1f} MB (peak of {len(held_rss)} samples), {threads_of(a.pid)} threads")

    # ---- phase 3: one more request on every connection
    t2 = time.monotonic()
    done2 = []
    waiting = 0
    for c in list(live.values()):
        c.status = None
        if send_req(c):
            waiting += 1
    deadline = t2 + a.timeout
    while waiting > 0 and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            was = c.state
            on_readable(c, done2)
            if was == "waiting" and c.state != "waiting":
                waiting -= 1
    for c in conns:
        if c.state == "waiting":
            close(c, "timeout_second")
    t3 = time.monotonic()
    second_ok = sum(1 for c in done2 if c.status == 200)
    log(f"   second request on {idle_live} connections: {second_ok} answered 200 in {t3 - t2:.2f} s")

    for c in list(live.values()):
        close(c)
    time.sleep(2.0)
    rss_after = rss_kb(a.pid)
    log(f"   all closed: server VmRSS {rss_after / 1024:.1f} MB")

    nerr = (a.conns - second_ok)
    if errors:
        log("   errors by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(errors.items())))
    print(f"RESULT conns={a.conns} first_ok={first_ok} second_ok={second_ok} errors={nerr} "
          f"dropped_idle={errors.get('dropped_idle', 0)} rss_before_kb={rss_before} "
          f"rss_held_kb={rss_held} rss_after_kb={rss_after} connect_s={t1 - t0:.2f} "
          f"first_s={t1 - t0:.2f} second_s={t3 - t2:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
