"""Redis as the shared response cache: two instances on one PostgreSQL and one Redis read each
other's writes at once (no stale cache, also from the near caches in front of Redis), cache hits
happen in Redis and in the near cache, and with Redis stopped reads still answer 200 (uncached)
while readiness reports it; when Redis is back, caching resumes and a write made meanwhile shows.
Runs in the PostgreSQL pass of `make test`, on a PostgreSQL and Redis of its own."""
import time

import harness
from harness import OwnServicesTestCase, services


class RedisCacheTest(OwnServicesTestCase):
    INSTANCES = 2
    IMPORT = "ames_small.csv"
    ENV = {"HEARTH_TEST_JOBS": "1", "HEARTH_JOB_WORKERS": "0"}

    def wait_redis(self, server):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            check = server.request("GET", "/health/ready").json["checks"]["redis"]
            if check["status"] == "ok" and check.get("near_cache") == "live":
                return
            time.sleep(0.1)
        self.fail("redis (and the near cache's subscription) did not become ready")

    def test_write_through_one_read_through_other(self):
        a, b = self.servers
        for s in (a, b):
            self.wait_redis(s)
        hits = b.metric("hearth_cache_hits_total")
        for s in (a, b, a, b):  # both have it cached now
            self.assertEqual(s.request("GET", "/api/properties/3").status, 200)
        self.assertGreater(b.metric("hearth_cache_hits_total"), hits, "b read what a cached")
        near = 'hearth_cache_hits_total{backend="near"}'
        near_hits = b.metric(near)
        self.assertEqual(b.request("GET", "/api/properties/3").status, 200)
        self.assertGreater(b.metric(near), near_hits, "b answered from its near cache")
        list_before = b.request("GET", "/api/properties?limit=100&sort=price").json
        for i in range(5):
            title = "Changed through A, round %d" % i
            r = a.request("PATCH", "/api/properties/3", body={"title": title})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(b.request("GET", "/api/properties/3").json["title"], title)
            items = b.request("GET", "/api/properties?limit=100&sort=price").json["items"]
            self.assertIn(title, [it["title"] for it in items])
        self.assertEqual(len(items), len(list_before["items"]))

    def test_redis_down_reads_still_answer(self):
        a, b = self.servers
        for s in (a, b):
            self.wait_redis(s)
        for s in (a, b, a, b):  # in Redis and in both near caches
            self.assertEqual(s.request("GET", "/api/properties/4").status, 200)
        services("redis-stop", self.dir)
        try:
            for _ in range(20):
                for s in (a, b):
                    r = s.request("GET", "/api/properties/4", timeout=5)
                    self.assertEqual(r.status, 200, r)
            r = a.request("GET", "/health/ready")
            self.assertEqual(r.json["checks"]["redis"]["status"], "unavailable")
            self.assertEqual(r.json["status"], "degraded")
            # a write while Redis is down must not leave stale entries behind when it returns
            self.assertEqual(a.request("PATCH", "/api/properties/4", body={"title": "Written while Redis was down"}).status, 200)
        finally:
            services("redis-start", self.dir)
        for s in (a, b):
            self.wait_redis(s)
        self.assertEqual(b.request("GET", "/api/properties/4").json["title"], "Written while Redis was down")
        self.assertEqual(a.request("GET", "/api/properties/4").json["title"], "Written while Redis was down")


    def test_job_progress_reaches_another_instance_through_redis(self):
        """A job run by a worker process; its events (progress included) reach an event stream and a
        WebSocket on the other instance, in order, each once, through Redis."""
        from test_events import SSE, done
        from test_jobs import Worker
        a, b = self.servers
        for s in (a, b):
            self.wait_redis(s)
        from wsclient import WS
        token = a.admin_token()
        sse = SSE(b, "jobs", token)  # clients of instance b
        ws = WS(b.port, "/ws?access_token=" + token)
        worker = Worker(a, args=["--concurrency", "1"])  # a worker process of its own
        try:
            ws.send({"action": "subscribe", "channel": "jobs"})
            self.assertEqual(ws.recv_json()["type"], "subscribed")
            r = a.request("POST", "/api/jobs", body={"type": "test.sleep", "payload": {"sleep_ms": 800}}, token=token)
            self.assertEqual(r.status, 202, r)
            jid = r.json["id"]
            evs = [e for e in sse.until(done(jid)) if e[2]["data"]["id"] == jid]
            over_ws = []
            while not over_ws or over_ws[-1]["type"] != "job_complete":
                e = ws.recv_json()
                if e["data"]["id"] == jid:
                    over_ws.append(e)
        finally:
            sse.close()
            ws.close()
            worker.stop()
        self.assertEqual([e["id"] for e in over_ws], [i for i, _, _ in evs], "the WebSocket saw what the stream saw")
        types = [t for _, t, _ in evs]
        self.assertEqual(types[:2], ["job_queued", "job_started"], types)
        self.assertEqual(types[-1], "job_complete")
        self.assertIn("progress", types)
        ids = [i for i, _, _ in evs]
        self.assertEqual(ids, sorted(set(ids)), "in order, each once (both instances' relays publish)")


if __name__ == "__main__":
    harness.main()
