"""Live events: a job's events reach an event-stream (SSE) client in order, a client that comes back
with Last-Event-ID gets what it missed without gaps, a change that did not commit publishes
nothing, an event published twice (a relay that died before marking it) reaches a client once, and
who may follow which channel. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL (events of
one instance; across instances through Redis: test_redis.py)."""
import json
import os
import socket
import subprocess
import time

import harness
from harness import ServerTestCase


class SSE:
    """A text/event-stream client on a raw socket: collects (id, event, data) as they arrive."""

    def __init__(self, server, channel, token=None, last_id=None, query_token=False):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        path = "/api/events?channel=" + channel
        headers = "Host: t\r\n"
        if token and query_token:
            path += "&access_token=" + token
        elif token:
            headers += "Authorization: Bearer %s\r\n" % token
        if last_id is not None:
            headers += "Last-Event-ID: %d\r\n" % last_id
        self.sock.sendall(("GET %s HTTP/1.1\r\n%s\r\n" % (path, headers)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._recv(10)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.events = []

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the stream ended")
        self.buf += data

    def body(self):
        """For a refused stream: the rest of the answer (its length is known)."""
        n = int(self.headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._recv(5)
        return json.loads(self.buf[:n])

    def _parse(self):
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            ev = {}
            for line in block.decode().split("\n"):
                if line.startswith(":") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                ev[k] = v[1:] if v.startswith(" ") else v
            if "data" in ev:
                self.events.append((int(ev["id"]), ev["event"], json.loads(ev["data"])))

    def until(self, pred, bound=20):
        """Reads until pred(events) holds."""
        deadline = time.monotonic() + bound
        self._parse()
        while not pred(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("events so far: %r" % [(i, t) for i, t, _ in self.events])
            try:
                self._recv(min(left, 1))
            except socket.timeout:
                pass
            self._parse()
        return self.events

    def close(self):
        self.sock.close()


def done(job_id):
    return lambda evs: any(t == "job_complete" and d["data"]["id"] == job_id for _, t, d in evs)


class EventsTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_TEST_JOBS": "1", "HEARTH_JOB_WORKERS": "1",
           "HEARTH_LOGIN_LIMITS": "account=1000/min:1000,address=10000/min:10000"}

    def enqueue(self, type_, payload=None, token=None):
        r = self.request("POST", "/api/jobs", body={"type": type_, "payload": payload or {}},
                         token=token or self.server.admin_token())
        self.assertEqual(r.status, 202, r)
        return r.json["id"]

    def test_a_jobs_events_arrive_in_order(self):
        admin = self.server.admin_token()
        sse = SSE(self.server, "jobs", admin)
        try:
            self.assertEqual(sse.status, 200)
            self.assertTrue(sse.headers["content-type"].startswith("text/event-stream"))
            jid = self.enqueue("test.sleep", {"sleep_ms": 700})
            evs = [e for e in sse.until(done(jid)) if e[2]["data"]["id"] == jid]
        finally:
            sse.close()
        types = [t for _, t, _ in evs]
        self.assertEqual(types[:2], ["job_queued", "job_started"])
        self.assertEqual(types[-1], "job_complete")
        self.assertTrue(all(t == "progress" for t in types[2:-1]) and len(types) > 3, types)
        ids = [i for i, _, _ in evs]
        self.assertEqual(ids, sorted(ids))
        progress = [d["data"]["progress"] for _, t, d in evs if t == "progress"]
        self.assertEqual(progress, sorted(progress))
        for i, t, d in evs:  # the event document (seed 002's WSEvent)
            self.assertEqual((d["id"], d["type"], d["channel"]), (i, t, "job:%d" % jid))
            self.assertRegex(d["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

    def test_resume_with_last_event_id_has_no_gaps(self):
        admin = self.server.admin_token()
        reference = SSE(self.server, "jobs", admin)  # connected all along
        first = SSE(self.server, "jobs", admin)
        try:
            a = self.enqueue("test.record")
            first.until(done(a))
            last = first.events[-1][0]
            first.close()
            b = self.enqueue("test.sleep", {"sleep_ms": 300})  # while the client is away
            reference.until(done(b))
            second = SSE(self.server, "jobs", admin, last_id=last)
            c = self.enqueue("test.record")
            second.until(done(c))
            reference.until(done(c))
            second.close()
        finally:
            reference.close()
        got = [i for i, _, _ in first.events] + [i for i, _, _ in second.events]
        want = [i for i, _, _ in reference.events if i <= got[-1]]
        self.assertEqual(got[-len(want):], want, "the resumed client saw every event, once, in order")
        self.assertEqual(len(got), len(set(got)))

    def test_query_token_and_property_channel(self):
        pid = self.request("GET", "/api/properties?limit=1").json["items"][0]["id"]
        anonymous = SSE(self.server, "property:%d" % pid)
        agent = self.server.user("agent")
        by_query = SSE(self.server, "property:%d" % pid, agent["access_token"], query_token=True)
        try:
            self.assertEqual((anonymous.status, by_query.status), (200, 200))
            # a refused change publishes nothing; the committed one publishes one event
            r = self.request("PATCH", "/api/properties/%d" % pid, body={"price": -5})
            self.assert_error(r, 422, "validation_failed")
            r = self.request("PATCH", "/api/properties/%d" % pid, body={"title": "Seen live"})
            self.assertEqual(r.status, 200)
            for client in (anonymous, by_query):
                evs = client.until(lambda evs: len(evs) >= 1)
                time.sleep(0.3)
                client._parse()
                self.assertEqual([(t, d["data"]["id"]) for _, t, d in client.events], [("property_updated", pid)])
        finally:
            anonymous.close()
            by_query.close()

    def test_republished_events_reach_a_client_once(self):
        admin = self.server.admin_token()
        sse = SSE(self.server, "jobs", admin)
        try:
            a = self.enqueue("test.record")
            sse.until(done(a))
            # as if a relay died after publishing and before marking: everything goes out again
            harness.sql(self.server, "UPDATE outbox_events SET published_at = NULL")
            b = self.enqueue("test.record")
            sse.until(done(b))
            time.sleep(0.5)
            sse._parse()
        finally:
            sse.close()
        ids = [i for i, _, _ in sse.events]
        self.assertEqual(len(ids), len(set(ids)), "no event twice")
        self.assertEqual(ids, sorted(ids))

    def test_an_event_that_commits_late_under_a_lower_id_still_goes_out(self):
        """The relay reads on from the last id it saw; a row that appears below it (its transaction
        took its id earlier and committed later) is found by the relay's periodic read from the
        start (every 2 s) and published: marked, like every other. (Streams already past that id
        do not show it: they keep events in id order.)"""
        admin = self.server.admin_token()
        sse = SSE(self.server, "jobs", admin)
        try:
            a = self.enqueue("test.record")
            sse.until(done(a))  # the relay has read past the job's events
        finally:
            sse.close()
        pg = harness.base_env(self.server.data_dir, self.server.extra_env).get("DATABASE_URL", "").startswith("postgres")
        # the lowest event's id, taken again by an unpublished row
        harness.sql(self.server, "DELETE FROM outbox_events WHERE id = (SELECT min(id) FROM outbox_events)")
        harness.sql(self.server, "INSERT INTO outbox_events (id, channel, type, data, created_at)%s"
                    " VALUES (1, 'property:1', 'property_updated', '{\"id\":1}', 0)"
                    % (" OVERRIDING SYSTEM VALUE" if pg else ""))
        deadline = time.monotonic() + 10
        while harness.query(self.server, "SELECT count(*) FROM outbox_events WHERE id = 1 AND published_at IS NULL") != "0":
            self.assertLess(time.monotonic(), deadline, "the late event was never published")
            time.sleep(0.1)

    def test_who_may_follow_what(self):
        agent = self.server.user("agent")
        other = self.server.user("agent")
        admin = self.server.admin_token()
        jid = self.enqueue("noop", token=admin)
        cases = [("jobs", None, 401), ("jobs", agent["access_token"], 403), ("jobs", admin, 200),
                 ("job:%d" % jid, None, 401), ("job:%d" % jid, other["access_token"], 403), ("job:%d" % jid, admin, 200),
                 ("job:999999", admin, 404), ("house:1", None, 422), ("property:abc", None, 422), ("", None, 422),
                 ("property:07", None, 422), ("job:+%d" % jid, admin, 422)]
        for channel, token, status in cases:
            s = SSE(self.server, channel, token)
            try:
                self.assertEqual(s.status, status, (channel, s.status))
                if status != 200:
                    self.assertIn("error", s.body())
            finally:
                s.close()
        bad = SSE(self.server, "jobs", "not-a-token", query_token=True)
        try:
            self.assertEqual(bad.status, 401)
        finally:
            bad.close()


if __name__ == "__main__":
    harness.main()
