#!/usr/bin/python3
"""bench/ws_client.py: WebSocket (GET /ws) benchmarks for hearth. Python stdlib only.

Receipt times are the kernel's: every client socket has SO_TIMESTAMPING (software receive
timestamps, CLOCK_REALTIME), so a figure is when the bytes reached the client's socket, not when
this single-threaded Python process got round to reading them (that time is reported too, as
"user"). hearth's event `timestamp` is CLOCK_REALTIME of the same machine.

  ws_client.py latency --port P --email E --password PW [--jobs 96] [--job-ms 3000]
                       [--redis HOST:PORT] [--timeout 300] [--dump FILE.csv]
    Logs in, opens one WebSocket with the admin's token and subscribes to "jobs", optionally
    PSUBSCRIBEs to hearth:ev:* on Redis itself (a tap: when the relay's PUBLISH left Redis), then
    enqueues JOBS test.sleep jobs ({"sleep_ms": JOB_MS}) from a second thread and reads events
    until every job has finished. For every "progress" event: latency = receipt - timestamp.
    Last line:
      RESULT events=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. mean_ms=.. user_p50_ms=..
             user_p99_ms=.. user_max_ms=.. tap_n=.. tap_p50_ms=.. tap_p99_ms=.. hop_p50_ms=..
             hop_p99_ms=.. jobs=.. finished=.. failed=.. duplicates=.. out_of_order=..
             out_of_order_in_channel=.. pings=.. errors=.. elapsed_s=..
    (tap_*: timestamp -> the PUBLISH leaving Redis; hop_*: leaving Redis -> the WebSocket.)

  ws_client.py fanout --port P --pid SERVER_PID --email E --password PW [--conns 10000]
                      [--sources 4] [--rounds 3] [--property ID] [--inflight 200] [--read-after 1]
    Opens CONNS anonymous WebSockets (selectors, non-blocking, source addresses 127.0.0.1..N
    round-robin, at most INFLIGHT handshakes outstanding; a 503 is retried), subscribes each to
    property:ID and waits for every "subscribed"; reads the server's VmRSS; then ROUNDS times
    sends one PATCH /api/properties/ID (admin token), sleeps READ_AFTER s (default 1: the client
    stays off the CPU while hearth writes; receipt times are the kernel's anyway) and reads each
    connection frame by frame (each frame gets the receive time of the segment it starts in).
    Times are from the PATCH's answer (its receipt), from the event's timestamp and from the
    PATCH being sent. The headline round is the median one by its last receipt. Last line:
      RESULT conns=.. subscribed=.. rounds=.. received_min=.. round=.. first_ms=.. median_ms=..
             p99_ms=.. last_ms=.. spread_ms=.. ts_last_ms=.. sent_last_ms=.. resp_ms=.. lasts_ms=..
             spreads_ms=.. sent_lasts_ms=.. resps_ms=.. received=.. rss_before_kb=.. rss_held_kb=..
             rss_after_kb=.. retries_503=.. errors=..
"""
import argparse
import base64
import calendar
import errno
import http.client
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

SO_TIMESTAMPING = 37  # asm-generic/socket.h
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h
ANC = socket.CMSG_SPACE(48)  # struct scm_timestamping: three timespecs
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def log(msg):
    print(msg, flush=True)


def die(msg):
    print(f"ws_client: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def stamp(sock):
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE)


def recv_ts(sock, n=65536):
    """(data, kernel receive time in s or None, user time in s). Raises BlockingIOError."""
    data, anc, _, _ = sock.recvmsg(n, ANC)
    now = time.time()
    kts = None
    for level, typ, d in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPING and len(d) >= 16:
            sec, nsec = struct.unpack_from("qq", d, 0)
            if sec:
                kts = sec + nsec / 1e9
    return data, kts, now


def rss_kb(pid, field="VmRSS:"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, -(-len(sorted_vals) * p // 100))
    return sorted_vals[min(len(sorted_vals), int(k)) - 1]


_ts_cache = {}


def rfc3339_us(s):
    """'YYYY-MM-DDTHH:MM:SS.ffffffZ' -> seconds since the epoch (float)."""
    head = s[:19]
    base = _ts_cache.get(head)
    if base is None:
        base = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        _ts_cache[head] = base
    frac = s[20:-1] if len(s) > 20 and s[19] == "." else ""
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


# ---------------------------------------------------------------- HTTP and WebSocket framing

def http_json(port, method, path, body=None, token=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, data


def login(port, email, password):
    st, j = http_json(port, "POST", "/api/auth/login", {"email": email, "password": password})
    if st != 200:
        die(f"login as {email}: HTTP {st} {j}")
    return j["access_token"]


def upgrade_request(port, token=None):
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nUser-Agent: hearth-ws-bench\r\n")
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return (head + "\r\n").encode()


def client_frame(payload, opcode=TEXT):
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    # XOR with the mask via int arithmetic (fast enough for small messages)
    m = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
    return head + mask + masked


def take_frames(buf):
    """Complete server frames at the start of buf: ([(opcode, payload)], bytes consumed)."""
    out, off, L = [], 0, len(buf)
    while L - off >= 2:
        b0, b1 = buf[off], buf[off + 1]
        n, h = b1 & 0x7F, 2
        if n == 126:
            if L - off < 4:
                break
            n, h = struct.unpack_from("!H", buf, off + 2)[0], 4
        elif n == 127:
            if L - off < 10:
                break
            n, h = struct.unpack_from("!Q", buf, off + 2)[0], 10
        if b1 & 0x80:
            h += 4  # a masked server frame would be a protocol error; skip the key anyway
        if L - off < h + n:
            break
        out.append((b0 & 0x0F, bytes(buf[off + h:off + h + n])))
        off += h + n
    return out, off


def take_http_head(buf):
    """(status, headers dict, head length) once buf holds a whole response head, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = -1
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, end + 4


# ---------------------------------------------------------------- latency

def resp_take(buf, off):
    """One RESP value from buf at off: (value, new offset) or None when incomplete."""
    if off >= len(buf):
        return None
    t = buf[off:off + 1]
    nl = buf.find(b"\r\n", off)
    if nl < 0:
        return None
    line = bytes(buf[off + 1:nl])
    if t == b"*":
        n = int(line)
        off = nl + 2
        items = []
        for _ in range(max(n, 0)):
            r = resp_take(buf, off)
            if r is None:
                return None
            v, off = r
            items.append(v)
        return items, off
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, nl + 2
        if len(buf) < nl + 2 + n + 2:
            return None
        return bytes(buf[nl + 2:nl + 2 + n]), nl + 2 + n + 2
    return line, nl + 2  # + - :


def cmd_latency(a):
    token = login(a.port, a.email, a.password)
    ws = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    ws.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp(ws)
    ws.sendall(upgrade_request(a.port, token))
    buf = bytearray()
    while take_http_head(buf) is None:
        d = ws.recv(65536)
        if not d:
            die("the server closed the WebSocket during the handshake")
        buf += d
    status, _, hl = take_http_head(buf)
    if status != 101:
        die(f"GET /ws answered {status}: {bytes(buf[:300])!r}")
    del buf[:hl]
    ws.sendall(client_frame(json.dumps({"action": "subscribe", "channel": "jobs"})))
    while True:
        frames, used = take_frames(buf)
        if frames:
            del buf[:used]
            op, p = frames[0]
            j = json.loads(p) if op == TEXT else {}
            if j.get("type") != "subscribed":
                die(f"subscribe to jobs: {p[:300]!r}")
            break
        d = ws.recv(65536)
        if not d:
            die("the server closed the WebSocket before answering the subscription")
        buf += d
    log("   WebSocket open as the admin, subscribed to \"jobs\"")

    tap = None
    if a.redis:
        host, _, port = a.redis.rpartition(":")
        tap = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
        tap.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stamp(tap)
        tap.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$11\r\nhearth:ev:*\r\n")
        tbuf = bytearray()
        while True:
            d = tap.recv(65536)
            if not d:
                die("Redis closed the tap connection")
            tbuf += d
            r = resp_take(tbuf, 0)
            if r is not None:
                del tbuf[:r[1]]
                break
        log("   Redis tap: PSUBSCRIBE hearth:ev:* (sees each PUBLISH as Redis sends it on)")

    ws.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ws, selectors.EVENT_READ, "ws")
    if tap:
        tap.setblocking(False)
        sel.register(tap, selectors.EVENT_READ, "tap")
        tbuf = bytearray()

    # enqueue from a thread so that the socket is read while jobs are being created
    enq = {"ids": [], "errors": 0, "done": False, "samples": []}

    def enqueue():
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        for _ in range(a.jobs):
            try:
                st, j = http_json(a.port, "POST", "/api/jobs",
                                  {"type": "test.sleep", "payload": {"sleep_ms": a.job_ms}}, token, conn=c)
            except (OSError, http.client.HTTPException) as ex:
                st, j = -1, str(ex)
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            if st == 202 and isinstance(j, dict) and "id" in j:
                enq["ids"].append(j["id"])
            else:
                enq["errors"] += 1
                if len(enq["samples"]) < 3:
                    enq["samples"].append(f"HTTP {st} {str(j)[:200]}")
        c.close()
        enq["done"] = True

    t0 = time.monotonic()
    th = threading.Thread(target=enqueue, daemon=True)
    th.start()

    received = []  # (payload bytes, kernel ts, user ts)
    taps = {}      # event id -> kernel ts at the tap
    finished, failed = set(), set()
    terminal = {"job_complete": finished, "job_failed": failed, "job_cancelled": failed}
    deadline = t0 + a.timeout
    pings = 0
    closed = None
    while time.monotonic() < deadline:
        if enq["done"] and enq["ids"] and len((finished | failed) & set(enq["ids"])) >= len(enq["ids"]):
            break
        if enq["done"] and not enq["ids"]:
            break
        for key, _ in sel.select(timeout=0.5):
            if key.data == "ws":
                try:
                    d, kts, uts = recv_ts(ws)
                except BlockingIOError:
                    continue
                if not d:
                    closed = "eof"
                    break
                buf += d
                frames, used = take_frames(buf)
                del buf[:used]
                for op, p in frames:
                    if op == TEXT:
                        received.append((p, kts, uts))
                        if b'"job_' in p[:60]:
                            j = json.loads(p)
                            s = terminal.get(j.get("type"))
                            if s is not None:
                                s.add(j["data"]["id"])
                    elif op == PING:
                        pings += 1
                        ws.setblocking(True)
                        ws.sendall(client_frame(p, PONG))
                        ws.setblocking(False)
                    elif op == CLOSE:
                        closed = f"close frame {p[:60]!r}"
            else:
                try:
                    d, kts, _ = recv_ts(tap)
                except BlockingIOError:
                    continue
                if not d:
                    log("   the Redis tap connection closed")
                    sel.unregister(tap)
                    continue
                tbuf += d
                off = 0
                while True:
                    r = resp_take(tbuf, off)
                    if r is None:
                        break
                    v, off = r
                    if isinstance(v, list) and len(v) == 4 and v[0] == b"pmessage":
                        doc = v[3].split(b"\n", 1)[-1]
                        try:
                            taps[json.loads(doc)["id"]] = kts
                        except (ValueError, KeyError):
                            pass
                del tbuf[:off]
        if closed:
            break
    elapsed = time.monotonic() - t0
    th.join(timeout=5)

    lat, ulat, tap_lat, hop_lat = [], [], [], []
    types = {}
    seen, dup, ooo, last_id = set(), 0, 0, 0
    ooo_channel, last_in, ooo_samples = 0, {}, []
    for p, kts, uts in received:
        j = json.loads(p)
        t = j.get("type")
        types[t] = types.get(t, 0) + 1
        eid = j.get("id")
        if eid in seen:
            dup += 1
            continue
        seen.add(eid)
        if eid < last_id:  # ids are the outbox's: a later id went out first
            ooo += 1
            if len(ooo_samples) < 3:
                ooo_samples.append(f"{eid} ({t} {j.get('channel')}) after {last_id}")
        last_id = max(last_id, eid)
        ch = j.get("channel")
        if eid < last_in.get(ch, 0):
            ooo_channel += 1
        last_in[ch] = max(last_in.get(ch, 0), eid)
        if t != "progress" or j.get("data", {}).get("id") not in enq["ids"]:
            continue
        ts = rfc3339_us(j["timestamp"])
        rk = kts if kts is not None else uts
        lat.append((rk - ts) * 1000)
        ulat.append((uts - ts) * 1000)
        tk = taps.get(eid)
        if tk is not None:
            tap_lat.append((tk - ts) * 1000)
            hop_lat.append((rk - tk) * 1000)
    if a.dump:
        with open(a.dump, "w") as f:
            f.write("id,type,channel,timestamp,tap_kernel,ws_kernel,ws_user\n")
            for p, kts, uts in received:
                j = json.loads(p)
                tk = taps.get(j.get("id"))
                f.write(f"{j.get('id')},{j.get('type')},{j.get('channel')},{rfc3339_us(j['timestamp']):.6f},"
                        f"{'' if tk is None else '%.6f' % tk},{'' if kts is None else '%.6f' % kts},{uts:.6f}\n")
    # late events: are they spread out, or a few stalls that hit several at once?
    late = []
    for p, kts, uts in received:
        j = json.loads(p)
        if j.get("type") == "progress":
            ts = rfc3339_us(j["timestamp"])
            d = ((kts if kts is not None else uts) - ts) * 1000
            if d > a.late_ms:
                late.append((ts, d, taps.get(j.get("id"))))
    late.sort()
    bursts = []
    for ts, d, tk in late:
        if bursts and ts - bursts[-1]["end"] < 0.2:
            b = bursts[-1]
            b["n"] += 1
            b["max"] = max(b["max"], d)
            b["end"] = ts
            b["redis"] += 1 if tk is not None and (tk - ts) * 1000 > a.late_ms else 0
        else:
            bursts.append({"start": ts, "end": ts, "n": 1, "max": d,
                           "redis": 1 if tk is not None and (tk - ts) * 1000 > a.late_ms else 0})
    if late:
        t_first = min(rfc3339_us(json.loads(p)["timestamp"]) for p, _, _ in received)
        desc = "; ".join(f"t={b['start'] - t_first:.1f} s: {b['n']} (max {b['max']:.1f} ms, {b['redis']} already late "
                         f"out of Redis)" for b in sorted(bursts, key=lambda b: -b["max"])[:6])
        late_msg = (f"   {len(late)} progress events later than {a.late_ms:g} ms, in {len(bursts)} bursts (events "
                    f"less than 200 ms apart), worst first: {desc}")
    else:
        late_msg = f"   no progress event later than {a.late_ms:g} ms"
    for v in (lat, ulat, tap_lat, hop_lat):
        v.sort()
    mine = set(enq["ids"])  # jobs of others (a scheduled one) are not counted
    finished, failed = finished & mine, failed & mine
    nk = sum(1 for _, k, _ in received if k is not None)
    log(f"   {len(enq['ids'])} jobs enqueued ({enq['errors']} enqueue errors), {len(finished)} finished, "
        f"{len(failed)} failed/cancelled, in {elapsed:.1f} s; {len(received)} events received "
        f"({', '.join(f'{k} {v}' for k, v in sorted(types.items()))}); kernel timestamps on {nk}")
    if enq["samples"]:
        log("   enqueue errors: " + "; ".join(enq["samples"]))
    if closed:
        log(f"   WebSocket closed by the server: {closed}")
    if ooo:
        log(f"   {ooo} events arrived after one with a higher id ({ooo_channel} of them within one job's channel); "
            f"e.g. {'; '.join(ooo_samples)}")
    f = lambda v, p: f"{pct(v, p):.2f}"
    if lat:
        log(f"   progress events: {len(lat)}; receipt - timestamp: p50 {f(lat, 50)} ms, p90 {f(lat, 90)} ms, "
            f"p99 {f(lat, 99)} ms, p99.9 {f(lat, 99.9)} ms, max {lat[-1]:.2f} ms, mean {sum(lat) / len(lat):.2f} ms, "
            f"min {lat[0]:.2f} ms")
        log(f"   (read by this client: p50 {f(ulat, 50)} ms, p99 {f(ulat, 99)} ms, max {ulat[-1]:.2f} ms)")
    if tap_lat:
        log(f"   split at the Redis tap ({len(tap_lat)} events): timestamp -> out of Redis p50 {f(tap_lat, 50)} ms, "
            f"p90 {f(tap_lat, 90)} ms, p99 {f(tap_lat, 99)} ms, max {tap_lat[-1]:.2f} ms; out of Redis -> WebSocket "
            f"p50 {f(hop_lat, 50)} ms, p90 {f(hop_lat, 90)} ms, p99 {f(hop_lat, 99)} ms, max {hop_lat[-1]:.2f} ms")
    log(late_msg)
    errors = enq["errors"] + len(failed) + (1 if closed else 0) + (len(enq["ids"]) - len(finished) - len(failed))
    print(f"RESULT events={len(lat)} p50_ms={f(lat, 50)} p90_ms={f(lat, 90)} p99_ms={f(lat, 99)} "
          f"max_ms={(lat[-1] if lat else float('nan')):.2f} mean_ms={(sum(lat) / len(lat) if lat else float('nan')):.2f} "
          f"user_p50_ms={f(ulat, 50)} user_p99_ms={f(ulat, 99)} user_max_ms={(ulat[-1] if ulat else float('nan')):.2f} "
          f"tap_n={len(tap_lat)} tap_p50_ms={f(tap_lat, 50)} tap_p99_ms={f(tap_lat, 99)} "
          f"hop_p50_ms={f(hop_lat, 50)} hop_p99_ms={f(hop_lat, 99)} jobs={len(enq['ids'])} finished={len(finished)} "
          f"failed={len(failed)} duplicates={dup} out_of_order={ooo} out_of_order_in_channel={ooo_channel} pings={pings} errors={errors} "
          f"elapsed_s={elapsed:.1f}", flush=True)
    return 0


# ---------------------------------------------------------------- fan-out

def frame_need(buf):
    """Bytes the first frame in buf takes (header and payload), as far as the header tells yet."""
    if len(buf) < 2:
        return 2
    n, h = buf[1] & 0x7F, 2
    if n == 126:
        h = 4
    elif n == 127:
        h = 10
    if buf[1] & 0x80:
        h += 4
    if len(buf) < h:
        return h
    if n == 126:
        n = struct.unpack_from("!H", buf, 2)[0]
    elif n == 127:
        n = struct.unpack_from("!Q", buf, 2)[0]
    return h + n


def pull(c):
    """Reads whatever frames are queued on c's socket, one frame at a time, so that each frame gets
    the kernel's receive time of the segment it starts in (a recvmsg reports the time of the last
    segment it read from). Returns ([(opcode, payload, kernel ts, user ts)], eof kind or None)."""
    out = []
    while True:
        if not c.buf:
            try:
                d, kts, uts = recv_ts(c.sock, 2)
            except BlockingIOError:
                return out, None
            except OSError:
                return out, "reset"
            if not d:
                return out, "eof"
            c.buf += d
            c.kts_frame = (kts if kts is not None else uts, uts)
        if c.kts_frame is None:  # bytes left from before the round
            c.kts_frame = (time.time(), time.time())
        need = frame_need(c.buf)
        if len(c.buf) < need:
            try:
                d = c.sock.recv(need - len(c.buf))
            except BlockingIOError:
                return out, None
            except OSError:
                return out, "reset"
            if not d:
                return out, "eof"
            c.buf += d
            continue
        frames, used = take_frames(c.buf)
        op, payload = frames[0]
        del c.buf[:need]
        out.append((op, payload) + c.kts_frame)
        c.kts_frame = None


class WsConn:
    __slots__ = ("sock", "buf", "state", "idx", "tries", "got", "kts", "uts", "evdata", "kts_frame")

    def __init__(self, sock, idx, tries):
        self.sock = sock
        self.buf = bytearray()
        self.state = "connecting"
        self.idx = idx
        self.tries = tries
        self.got = -1   # the round whose event this connection has received
        self.kts = self.uts = None
        self.evdata = None
        self.kts_frame = None


def cmd_fanout(a):
    token = login(a.port, a.email, a.password)
    pid = a.property
    if not pid:
        st, j = http_json(a.port, "GET", "/api/properties?limit=1")
        if st != 200 or not j.get("items"):
            die(f"GET /api/properties?limit=1: HTTP {st}")
        pid = j["items"][0]["id"]
    channel = f"property:{pid}"
    sub_frame_text = json.dumps({"action": "subscribe", "channel": channel})
    upgrade = upgrade_request(a.port)
    sel = selectors.DefaultSelector()
    errors = {}

    def err(kind):
        errors[kind] = errors.get(kind, 0) + 1

    live = {}  # fd -> WsConn
    conns = []
    requeue = []

    def close(c, kind=None):
        if kind:
            err(kind)
        fd = c.sock.fileno()
        if fd in live:
            del live[fd]
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.state = "dead"
        c.sock.close()

    rss_before = rss_kb(a.pid)
    log(f"   server pid {a.pid}: VmRSS before {rss_before / 1024:.1f} MB; channel {channel}")

    # ---- open and subscribe
    t0 = time.monotonic()
    next_idx, pending, subscribed, retries = 0, 0, 0, 0
    deadline = t0 + a.timeout
    while (next_idx < a.conns or requeue or pending) and time.monotonic() < deadline:
        while (next_idx < a.conns or requeue) and pending < a.inflight:
            if requeue:
                idx, tries = requeue.pop()
            else:
                idx, tries = next_idx, 0
                next_idx += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((f"127.0.0.{1 + idx % max(1, a.sources)}", 0))
                stamp(s)
            except OSError:
                s.close()
                err("bind")
                continue
            rc = s.connect_ex(("127.0.0.1", a.port))
            if rc not in (0, errno.EINPROGRESS):
                err(f"connect_{errno.errorcode.get(rc, rc)}")
                s.close()
                continue
            c = WsConn(s, idx, tries)
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
                try:
                    c.sock.send(upgrade)
                except OSError as ex:
                    close(c, f"send_{errno.errorcode.get(ex.errno, ex.errno)}")
                    pending -= 1
                    continue
                c.state = "upgrading"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                d = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                if c.state in ("upgrading", "subscribing"):
                    pending -= 1
                close(c, f"eof_{c.state}")
                continue
            c.buf += d
            if c.state == "upgrading":
                h = take_http_head(c.buf)
                if h is None:
                    continue
                status, _, hl = h
                if status != 101:
                    pending -= 1
                    close(c)
                    if status == 503 and c.tries < 5:
                        retries += 1
                        requeue.append((c.idx, c.tries + 1))
                        err("status_503_retried")
                    else:
                        err(f"status_{status}")
                    continue
                del c.buf[:hl]
                c.sock.send(client_frame(sub_frame_text))
                c.state = "subscribing"
            if c.state == "subscribing":
                frames, used = take_frames(c.buf)
                del c.buf[:used]
                for op, p in frames:
                    if op == TEXT:
                        j = json.loads(p)
                        if j.get("type") == "subscribed":
                            c.state = "subscribed"
                            subscribed += 1
                            pending -= 1
                        else:
                            pending -= 1
                            close(c, "subscribe_" + str(j.get("type")))
                        break
            elif c.state == "subscribed":
                frames, used = take_frames(c.buf)
                del c.buf[:used]
                for op, p in frames:
                    if op == TEXT:
                        close(c, "unexpected_event")  # nothing was changed yet
                        break
                    if op == CLOSE:
                        close(c, "closed_by_server")
                        break
    for c in conns:
        if c.state in ("connecting", "upgrading", "subscribing"):
            close(c, "timeout_open")
    t1 = time.monotonic()
    log(f"   {subscribed} of {a.conns} WebSockets open and subscribed in {t1 - t0:.2f} s "
        f"({retries} handshakes answered 503 and retried; at most {a.inflight} outstanding)")
    time.sleep(1.0)
    # pings (every 15 s per connection) are read and dropped by the loop below; sample the RSS now
    rss_held = rss_kb(a.pid)
    log(f"   server VmRSS with {len(live)} WebSockets open: {rss_held / 1024:.1f} MB "
        f"(+{(rss_held - rss_before) / 1024:.1f} MB, ~{(rss_held - rss_before) * 1024 / max(1, len(live)):.0f} bytes each)")

    # ---- rounds: one PATCH each, then wait for every connection's event
    patch_sock = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    patch_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp(patch_sock)
    rounds = []
    for rnd in range(a.rounds):
        title = f"ws fan-out bench {os.getpid()} round {rnd + 1} {time.time():.6f}"
        body = json.dumps({"title": title}).encode()
        req = (f"PATCH /api/properties/{pid} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        targets = [c for c in live.values() if c.state == "subscribed"]
        for c in targets:
            c.kts = c.uts = None
        waiting = len(targets)
        pbuf = bytearray()
        presp = None  # (status, kernel ts, user ts)
        patch_sock.setblocking(True)
        t_sent = time.time()
        patch_sock.sendall(req)
        patch_sock.setblocking(False)
        sel.register(patch_sock, selectors.EVENT_READ, None)
        if a.read_after > 0:
            time.sleep(a.read_after)  # stay off the CPU while hearth fans out; receipt times are the kernel's
        rdeadline = time.monotonic() + a.round_timeout
        pings = 0
        while (waiting > 0 or presp is None) and time.monotonic() < rdeadline:
            for key, _ in sel.select(timeout=0.5):
                c = key.data
                if c is None:
                    try:
                        d, kts, uts = recv_ts(patch_sock)
                    except BlockingIOError:
                        continue
                    if not d:
                        die("the server closed the PATCH connection")
                    pbuf += d
                    h = take_http_head(pbuf)
                    if h and len(pbuf) >= h[2] + int(h[1].get("content-length", "0")):
                        presp = (h[0], kts if kts is not None else uts, uts, bytes(pbuf[h[2]:]))
                        del pbuf[:]
                        sel.unregister(patch_sock)
                    continue
                frames, eof = pull(c)
                for op, p, kts, uts in frames:
                    if op == TEXT and c.got != rnd:
                        c.got = rnd
                        c.kts, c.uts = kts, uts
                        c.evdata = p
                        waiting -= 1
                    elif op == PING:
                        pings += 1
                    elif op == CLOSE:
                        eof = "closed_by_server"
                        break
                if eof:
                    if c.got != rnd:
                        waiting -= 1
                    close(c, f"{eof}_round{rnd + 1}")
        try:
            sel.unregister(patch_sock)
        except (KeyError, ValueError):
            pass
        if presp is None:
            log(f"   round {rnd + 1}: the PATCH got no answer within {a.round_timeout:.0f} s")
            rounds.append(None)
            continue
        if presp[0] != 200:
            log(f"   round {rnd + 1}: PATCH answered {presp[0]}: {presp[3][:200]!r}")
        got = [c for c in targets if c.got == rnd and c.kts is not None]
        bad = 0
        for c in got:
            try:
                j = json.loads(c.evdata)
                if j.get("type") != "property_updated" or j.get("channel") != channel:
                    bad += 1
            except ValueError:
                bad += 1
        if bad:
            err("wrong_event")
            log(f"   round {rnd + 1}: {bad} connections got some other event first: {got[0].evdata[:200]!r}")
        ts_evt = None
        if got:
            try:
                ts_evt = rfc3339_us(json.loads(got[0].evdata)["timestamp"])
            except (ValueError, KeyError):
                pass
        rel = sorted((c.kts - presp[1]) * 1000 for c in got)
        urel = sorted((c.uts - presp[1]) * 1000 for c in got)
        nan = float("nan")
        last_k = max((c.kts for c in got), default=None)
        r = {"n": len(targets), "got": len(got), "resp_ms": (presp[1] - t_sent) * 1000, "status": presp[0],
             "first": rel[0] if rel else nan, "median": pct(rel, 50), "p90": pct(rel, 90),
             "p99": pct(rel, 99), "last": rel[-1] if rel else nan,
             "ulast": urel[-1] if urel else nan, "spread": (rel[-1] - rel[0]) if rel else nan,
             "evt_ms": ((presp[1] - ts_evt) * 1000) if ts_evt else nan,
             "sent_last": ((last_k - t_sent) * 1000) if got else nan,
             "ts_last": ((last_k - ts_evt) * 1000) if got and ts_evt else nan}
        rounds.append(r)
        log(f"   round {rnd + 1}: PATCH answered {presp[0]} {r['resp_ms']:.2f} ms after it was sent (its event's "
            f"timestamp {r['evt_ms']:.2f} ms before the answer); {r['got']} of {r['n']} received the event; "
            f"from the answer: first {r['first']:.2f} ms, median {r['median']:.2f} ms, p90 {r['p90']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, last {r['last']:.2f} ms; first to last {r['spread']:.2f} ms; last "
            f"{r['ts_last']:.2f} ms after the event's timestamp, {r['sent_last']:.2f} ms after the PATCH was sent"
            + (f"; this client read the last one {r['ulast']:.2f} ms after the answer" if a.read_after <= 0 else "")
            + (f"; {pings} pings" if pings else ""))
        time.sleep(a.pause)

    held_after = rss_kb(a.pid)
    nlive = len(live)
    for c in list(live.values()):
        close(c)
    patch_sock.close()
    time.sleep(2.0)
    rss_after = rss_kb(a.pid)
    log(f"   server VmRSS after the rounds, still open: {held_after / 1024:.1f} MB; all closed (2 s later): "
        f"{rss_after / 1024:.1f} MB; peak (VmHWM) {rss_kb(a.pid, 'VmHWM:') / 1024:.1f} MB")
    if errors:
        log("   errors/notes by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(errors.items())))
    ok_rounds = [r for r in rounds if r]
    recv_min = min((r["got"] for r in ok_rounds), default=0) if len(ok_rounds) == len(rounds) else 0
    nan = float("nan")
    # the headline round: the median one by its last receipt
    by_last = sorted(ok_rounds, key=lambda r: r["sent_last"])
    m = by_last[(len(by_last) - 1) // 2] if by_last else None
    g = lambda k: m[k] if m else nan
    series = lambda k: ",".join("%.1f" % r[k] for r in ok_rounds) or "-"
    hard_errors = sum(v for k, v in errors.items() if k != "status_503_retried")
    print(f"RESULT conns={a.conns} subscribed={subscribed} open_s={t1 - t0:.2f} rounds={len(rounds)} "
          f"received_min={recv_min} round={ok_rounds.index(m) + 1 if m else 0} first_ms={g('first'):.2f} "
          f"median_ms={g('median'):.2f} p99_ms={g('p99'):.2f} last_ms={g('last'):.2f} spread_ms={g('spread'):.2f} "
          f"ts_last_ms={g('ts_last'):.2f} sent_last_ms={g('sent_last'):.2f} resp_ms={g('resp_ms'):.2f} "
          f"lasts_ms={series('last')} spreads_ms={series('spread')} sent_lasts_ms={series('sent_last')} "
          f"resps_ms={series('resp_ms')} received={','.join(str(r['got']) for r in ok_rounds)} "
          f"open_at_end={nlive} rss_before_kb={rss_before} rss_held_kb={rss_held} rss_after_kb={rss_after} "
          f"retries_503={retries} errors={hard_errors}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--jobs", type=int, default=96)
    p.add_argument("--job-ms", type=int, default=3000)
    p.add_argument("--redis", default="", help="HOST:PORT of Redis for the tap (empty: no tap)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--dump", default="", help="write every event received (CSV) to this file")
    p.add_argument("--late-ms", type=float, default=5.0, help="events later than this are listed by burst")
    p = sub.add_parser("fanout")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.1..N")
    p.add_argument("--inflight", type=int, default=200, help="max handshakes outstanding")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    p.add_argument("--property", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="time limit for opening (s)")
    p.add_argument("--round-timeout", type=float, default=30.0)
    p.add_argument("--read-after", type=float, default=1.0,
                   help="after the PATCH, sleep this long before reading (0: read as events come)")
    a = ap.parse_args()
    return cmd_latency(a) if a.cmd == "latency" else cmd_fanout(a)


if __name__ == "__main__":
    sys.exit(main())
