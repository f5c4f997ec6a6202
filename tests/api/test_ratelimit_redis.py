"""Rate limits shared through Redis: two instances draw on one budget per client, the headers
agree, and with Redis stopped the configured behaviour (allow) holds. Runs in the PostgreSQL pass
of `make test`, on a PostgreSQL and Redis of its own."""

import harness
from harness import OwnServicesTestCase, services


class SharedRateLimitTest(OwnServicesTestCase):
    INSTANCES = 2
    ENV = {"HEARTH_RATE_LIMITS": "read=6/min", "HEARTH_RATE_LIMIT_REDIS_DOWN": "allow",
           "HEARTH_TRUSTED_PROXIES": "127.0.0.1"}

    def test_one_budget_for_two_instances(self):
        a, b = self.servers
        remaining = []
        for i in range(6):
            r = (a, b)[i % 2].request("GET", "/api/properties?limit=1")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers["ratelimit-limit"], "6")
            remaining.append(int(r.headers["ratelimit-remaining"]))
        self.assertEqual(remaining, [5, 4, 3, 2, 1, 0])
        for s in (a, b):
            r = s.request("GET", "/api/properties?limit=1")
            self.assertEqual(r.status, 429, r)
            self.assertEqual(r.json["error"]["code"], "rate_limited")
            self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
            self.assertEqual(r.headers["ratelimit-remaining"], "0")

    def test_redis_down_allows(self):
        # while Redis is down, "allow" lets requests through without the shared budget; each
        # instance still applies the rule to what it sees itself (the in-process first pass)
        a, _ = self.servers
        hdrs = {"X-Forwarded-For": "198.51.100.7"}  # a client of its own
        services("redis-stop", self.dir)
        try:
            for _ in range(6):
                r = a.request("GET", "/api/properties?limit=1", headers=hdrs)
                self.assertEqual(r.status, 200, r)
                self.assertNotIn("ratelimit-limit", r.headers)
            r = a.request("GET", "/api/properties?limit=1", headers=hdrs)
            self.assertEqual(r.status, 429, "the instance's own count still applies the rule")
        finally:
            services("redis-start", self.dir)

    def test_flood_refused_on_the_loop(self):
        # a client over its budget is refused before it takes a place in the worker queue: the
        # in-process first pass answers, so the 429 still comes with the rule's figures
        a, _ = self.servers
        hdrs = {"X-Forwarded-For": "198.51.100.99"}
        statuses = [a.request("GET", "/openapi.json", headers=hdrs).status for _ in range(8)]
        self.assertEqual(statuses[:6], [200] * 6)
        self.assertEqual(statuses[6:], [429, 429])


if __name__ == "__main__":
    harness.main()
