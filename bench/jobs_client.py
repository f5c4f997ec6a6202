#!/usr/bin/python3
"""bench/jobs_client.py: enqueue N no-op jobs into a hearth server and wait until all of them are
done (enqueue to done). Python stdlib only.

usage: jobs_client.py --base http://127.0.0.1:PORT --email E --password P [--jobs 10000]
                      [--conns 16] [--batch 1] [--poll 0.01] [--timeout 300]

1. Logs in as the admin (POST /api/auth/login) and reads the current job gauges from /metrics.
2. t0; POST /api/jobs {"type":"noop"} N times over CONNS keep-alive connections (selectors, one
   request in flight per connection), each answer must be 202; t_enqueued. With --batch B > 1,
   each request is a batch {"jobs": [{"type":"noop"}, ...]} of B jobs (the last one smaller).
3. Polls GET /metrics until hearth_jobs_waiting + hearth_jobs_running (summed over the queues;
   the database's view, every process's jobs) is 0; t_done. This is the end of the measured
   interval: the client knows every job has left the queue. The poll interval starts at POLL s
   and grows with the wait (2% of it, at most 0.1 s), so the end is known to within ~2% while a
   long drain is not slowed down by the polling itself.
4. Checks: pages through GET /api/jobs?status=succeeded&limit=100 (cursor) and finds every one of
   the N ids there (status succeeded, result {}), none dead; the latest finished_at of the N jobs
   is the server-side end (reported, not scored).

Prints, last, one line:
  RESULT jobs=.. conns=.. enqueue_s=.. total_s=.. jobs_per_s=.. enqueue_per_s=.. server_done_s=..
         succeeded=.. missing=.. dead=.. errors=.. polls=..
Exits 1 when an enqueue failed or a job did not succeed (the line is printed anyway).
"""
import argparse
import datetime
import http.client
import json
import re
import selectors
import socket
import sys
import time
import urllib.parse


def die(msg):
    print(f"jobs_client: {msg}", file=sys.stderr)
    sys.exit(2)


class Conn:
    __slots__ = ("sock", "buf", "inflight")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.inflight = False


def take_response(buf):
    """(status, body, rest) when buf starts with one complete response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end]
    status = int(head[9:12])
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if not m:
        raise RuntimeError("response without Content-Length: %r" % head[:200])
    n = int(m.group(1))
    start = end + 4
    if len(buf) < start + n:
        return None
    return status, buf[start:start + n], buf[start + n:]


ID_RE = re.compile(rb'\{"id":(\d+),"type":')


def enqueue(host, port, token, jobs, batch, conns, deadline):
    """POSTs `jobs` jobs to /api/jobs, `batch` a request, over `conns` connections; returns (ids,
    errors, first error texts)."""
    def request(k):
        body = b'{"type":"noop"}' if batch == 1 else b'{"jobs":[%s]}' % b",".join([b'{"type":"noop"}'] * k)
        return (b"POST /api/jobs HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (host.encode(), port, token.encode(), len(body), body))
    n = (jobs + batch - 1) // batch
    req, last = request(batch), request(jobs - (n - 1) * batch)
    sel = selectors.DefaultSelector()
    pool = []
    for _ in range(min(conns, n)):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = Conn(s)
        pool.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    ids, errors, samples = [], 0, []
    sent = done = 0
    for c in pool:  # one request in flight on every connection
        if sent < n:
            c.sock.sendall(req if sent < n - 1 else last)
            c.inflight = True
            sent += 1
    while done < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"enqueue timed out after {done} of {n} answers")
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("the server closed a connection during the enqueue")
            c.buf += chunk
            while True:
                r = take_response(c.buf)
                if r is None:
                    break
                status, rbody, c.buf = r
                done += 1
                c.inflight = False
                got = [int(m) for m in ID_RE.findall(rbody)] if status == 202 else []
                if got and (batch == 1 or len(got) <= batch):
                    ids.extend(got)
                else:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(f"HTTP {status} {rbody[:200]!r}")
                if sent < n:
                    c.sock.setblocking(True)
                    c.sock.sendall(req if sent < n - 1 else last)
                    c.sock.setblocking(False)
                    c.inflight = True
                    sent += 1
    for c in pool:
        sel.unregister(c.sock)
        c.sock.close()
    sel.close()
    return ids, errors, samples


GAUGE_RE = re.compile(r'^(hearth_jobs_waiting|hearth_jobs_running|hearth_jobs_dead)\{queue="[a-z]+"\} (\d+)$', re.M)


def gauges(conn):
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    text = r.read().decode()
    if r.status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {r.status}")
    out = {"hearth_jobs_waiting": 0, "hearth_jobs_running": 0, "hearth_jobs_dead": 0}
    found = False
    for name, v in GAUGE_RE.findall(text):
        out[name] += int(v)
        found = True
    if not found:
        raise RuntimeError("GET /metrics has no hearth_jobs_* gauges (the queue statistics failed?)")
    return out


def iso_us(s):
    # "2026-11-22T14:03:39.017645Z" -> Unix time in seconds (float, microseconds kept)
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--poll", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.base)
    host, port = u.hostname, u.port

    ctl = http.client.HTTPConnection(host, port, timeout=60)
    ctl.request("POST", "/api/auth/login", body=json.dumps({"email": a.email, "password": a.password}),
                headers={"Content-Type": "application/json"})
    r = ctl.getresponse()
    rb = r.read()
    if r.status != 200:
        die(f"login: HTTP {r.status} {rb[:200]!r}")
    token = json.loads(rb)["access_token"]
    g0 = gauges(ctl)
    for _ in range(300):  # e.g. a scheduled job (the hourly prune) running: let it finish first
        if not g0["hearth_jobs_waiting"] and not g0["hearth_jobs_running"]:
            break
        time.sleep(0.1)
        g0 = gauges(ctl)
    else:
        die(f"the queue is not empty before the run (after 30 s): {g0}")

    deadline = time.monotonic() + a.timeout
    t0_wall = time.time()
    t0 = time.perf_counter()
    ids, errors, samples = enqueue(host, port, token, a.jobs, max(1, a.batch), a.conns, deadline)
    t_enq = time.perf_counter()
    polls = 0
    while True:
        g = gauges(ctl)
        polls += 1
        if g["hearth_jobs_waiting"] == 0 and g["hearth_jobs_running"] == 0:
            break
        if time.monotonic() > deadline:
            print(f"jobs_client: timed out waiting for the queue to drain: {g}", file=sys.stderr)
            break
        # every POLL s at first, then less often (at most 2% of the time waited so far, at most
        # every 0.1 s): the statistics query counts the waiting jobs, and a long drain polled every
        # 10 ms would load the database being measured
        time.sleep(min(0.1, max(a.poll, (time.perf_counter() - t_enq) * 0.02)))
    t_done = time.perf_counter()
    for s in samples:
        print(f"jobs_client: enqueue error: {s}", file=sys.stderr)

    # checks: every id succeeded (newest first: stop below our smallest id)
    want = set(ids)
    lo = min(ids) if ids else 0
    succeeded, last_finish, bad = 0, 0.0, 0
    cursor = None
    hdr = {"Authorization": "Bearer " + token}
    while want:
        path = "/api/jobs?status=succeeded&limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        ctl.request("GET", path, headers=hdr)
        r = ctl.getresponse()
        rb = r.read()
        if r.status != 200:
            die(f"GET {path}: HTTP {r.status} {rb[:200]!r}")
        page = json.loads(rb)
        for j in page["items"]:
            if j["id"] in want:
                want.discard(j["id"])
                succeeded += 1
                if j["type"] != "noop" or j["result"] != {}:
                    bad += 1
                last_finish = max(last_finish, iso_us(j["finished_at"]))
        cursor = page.get("next_cursor")
        if not cursor or (page["items"] and page["items"][-1]["id"] < lo):
            break
    g1 = gauges(ctl)
    dead = g1["hearth_jobs_dead"] - g0["hearth_jobs_dead"]
    ctl.close()

    total = t_done - t0
    enq = t_enq - t0
    server_done = last_finish - t0_wall if last_finish else 0.0
    print(f"RESULT jobs={a.jobs} conns={a.conns} batch={a.batch} enqueue_s={enq:.3f} total_s={total:.3f} "
          f"jobs_per_s={a.jobs / total:.1f} enqueue_per_s={a.jobs / enq:.1f} server_done_s={server_done:.3f} "
          f"succeeded={succeeded} missing={len(want)} dead={dead} errors={errors} bad={bad} polls={polls}")
    sys.exit(0 if succeeded == a.jobs and len(ids) == a.jobs and errors == 0 and bad == 0 else 1)


if __name__ == "__main__":
    main()
