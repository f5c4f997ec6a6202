"""Rate limiting (HEARTH_RATE_LIMITS): each route class has a budget per client address; over it a
request gets 429 rate_limited with Retry-After and the RateLimit-* headers, and responses under it
carry RateLimit-Limit/-Remaining/-Reset. Health and /metrics are never limited. Clients are
simulated with X-Forwarded-For from a trusted proxy (the test client on 127.0.0.1)."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from harness import ServerTestCase, valid_property, base_env, free_port, BIN

READS = "/api/properties?limit=1"


def as_client(ip, headers=None):
    h = {"X-Forwarded-For": ip}
    h.update(headers or {})
    return h


class RateLimitTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_RATE_LIMITS": "read=5/min,write=2/min", "HEARTH_TRUSTED_PROXIES": "127.0.0.1"}

    def assert_ratelimit_headers(self, r, limit, remaining=None):
        h = r.headers
        for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            self.assertIn(name, h, repr(r))
            self.assertRegex(h[name], r"^\d+$", repr(r))
        self.assertEqual(int(h["ratelimit-limit"]), limit, repr(r))
        if remaining is not None:
            self.assertEqual(int(h["ratelimit-remaining"]), remaining, repr(r))
        self.assertGreaterEqual(int(h["ratelimit-reset"]), 1, repr(r))
        self.assertLessEqual(int(h["ratelimit-reset"]), 60, repr(r))

    def assert_limited(self, r, limit):
        self.assert_error(r, 429, "rate_limited")
        self.assert_ratelimit_headers(r, limit, 0)
        self.assertRegex(r.headers.get("retry-after", ""), r"^\d+$", repr(r))
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertLessEqual(int(r.headers["retry-after"]), 60)
        self.assertEqual(r.headers["retry-after"].count(","), 0, "one Retry-After only: %r" % (r,))

    def exhaust_reads(self, ip):
        for _ in range(5):
            self.assertEqual(self.request("GET", READS, headers=as_client(ip)).status, 200)
        self.assert_limited(self.request("GET", READS, headers=as_client(ip)), 5)

    def test_reads_count_down_then_429(self):
        ip = "203.0.113.1"
        for i in range(5):
            r = self.request("GET", READS, headers=as_client(ip))
            self.assertEqual(r.status, 200, repr(r))
            self.assert_ratelimit_headers(r, 5, 4 - i)
        r = self.request("GET", READS, headers=as_client(ip))
        self.assert_limited(r, 5)
        # the 429 counts nothing: still refused, and other read routes share the class budget
        self.assert_limited(self.request("GET", "/api/properties/1", headers=as_client(ip)), 5)
        r = self.request("HEAD", READS, headers=as_client(ip))
        self.assertEqual(r.status, 429, repr(r))

    def test_writes_have_their_own_budget(self):
        ip = "203.0.113.2"
        self.exhaust_reads(ip)
        r = self.request("POST", "/api/properties", valid_property(), headers=as_client(ip))
        self.assertEqual(r.status, 201, repr(r))
        self.assert_ratelimit_headers(r, 2, 1)
        pid = r.json["id"]
        r = self.request("PATCH", "/api/properties/%d" % pid, {"price": 1000}, headers=as_client(ip))
        self.assertEqual(r.status, 200, repr(r))
        self.assert_ratelimit_headers(r, 2, 0)
        r = self.request("DELETE", "/api/properties/%d" % pid, headers=as_client(ip))
        self.assert_limited(r, 2)
        # the refused delete did not happen
        self.assertEqual(self.request("GET", "/api/properties/%d" % pid).status, 200)

    def test_client_errors_count_too(self):
        ip = "203.0.113.3"
        for _ in range(2):
            r = self.request("POST", "/api/properties", "{", headers=as_client(ip, {"Content-Type": "application/json"}))
            self.assertEqual(r.status, 400, repr(r))
            self.assertIn("ratelimit-remaining", r.headers)
        self.assert_limited(self.request("POST", "/api/properties", valid_property(), headers=as_client(ip)), 2)

    def test_health_and_metrics_never_limited(self):
        ip = "203.0.113.4"
        self.exhaust_reads(ip)
        for _ in range(20):
            for path in ("/health/live", "/health/ready", "/api/health"):
                r = self.request("GET", path, headers=as_client(ip))
                self.assertEqual(r.status, 200, "%s -> %r" % (path, r))
                self.assertNotIn("ratelimit-limit", r.headers)
        for _ in range(10):
            r = self.request("GET", "/metrics")  # loopback: not through the proxy
            self.assertEqual(r.status, 200, repr(r))
            self.assertNotIn("ratelimit-limit", r.headers)

    def test_clients_have_separate_budgets(self):
        self.exhaust_reads("203.0.113.5")
        r = self.request("GET", READS, headers=as_client("203.0.113.6"))
        self.assertEqual(r.status, 200, repr(r))
        self.assert_ratelimit_headers(r, 5, 4)
        r = self.request("GET", READS, headers=as_client("2001:db8::7"))
        self.assertEqual(r.status, 200, repr(r))
        self.assert_ratelimit_headers(r, 5, 4)
        self.assert_limited(self.request("GET", READS, headers=as_client("203.0.113.5")), 5)

    def test_spoofed_forwarded_for_is_not_a_new_client(self):
        # the client writes X-Forwarded-For itself; the trusted proxy (us) appends the real address
        ip = "203.0.113.8"
        self.exhaust_reads(ip)
        r = self.request("GET", READS, headers={"X-Forwarded-For": "198.51.100.99, " + ip})
        self.assert_limited(r, 5)

    def test_metrics_count_allowed_and_limited(self):
        self.exhaust_reads("203.0.113.10")
        body = self.request("GET", "/metrics").raw.decode()
        m = re.search(r'^hearth_ratelimit_limited_total\{class="read"\} (\d+)$', body, re.M)
        self.assertTrue(m, body[-2000:])
        self.assertGreaterEqual(int(m.group(1)), 1)
        m = re.search(r'^hearth_ratelimit_allowed_total\{class="read"\} (\d+)$', body, re.M)
        self.assertTrue(m, body[-2000:])
        self.assertGreaterEqual(int(m.group(1)), 5)
        self.assertRegex(body, r'(?m)^hearth_ratelimit_allowed_total\{class="write"\} \d+$')
        self.assertRegex(body, r'(?m)^hearth_ratelimit_keys\{backend="(memory|redis)"\} \d+$')
        m = re.search(r'^hearth_http_requests_total\{route="/api/properties",method="GET",status="429"\} (\d+)$', body, re.M)
        self.assertTrue(m, "429s are counted by route too")


class RateLimitRefillTest(ServerTestCase):
    ENV = {"HEARTH_RATE_LIMITS": "read=2/1s"}

    def test_budget_refills(self):
        # two at once, then one every 500 ms: send until refused (a slow machine may refill a little)
        limited = None
        for _ in range(20):
            r = self.request("GET", READS)
            if r.status == 429:
                limited = r
                break
            self.assertEqual(r.status, 200, repr(r))
        self.assertIsNotNone(limited, "never refused with read=2/1s")
        self.assertEqual(limited.headers.get("retry-after"), "1", repr(limited))
        self.assertEqual(limited.headers.get("ratelimit-limit"), "2", repr(limited))
        time.sleep(1.2)
        r = self.request("GET", READS)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.headers.get("ratelimit-limit"), "2")
        # writes have no rule here: not limited and no headers
        r = self.request("DELETE", "/api/properties/999999")
        self.assertEqual(r.status, 404, repr(r))
        self.assertNotIn("ratelimit-limit", r.headers)


class NoRateLimitTest(ServerTestCase):
    def test_unset_means_no_limit(self):
        for _ in range(30):
            r = self.request("GET", READS)
            self.assertEqual(r.status, 200, repr(r))
            self.assertNotIn("ratelimit-limit", r.headers)
        body = self.request("GET", "/metrics").raw.decode()
        self.assertNotIn("hearth_ratelimit_", body)


class RateLimitConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-rl-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config_error(self, var, value):
        env = {"HEARTH_LISTEN": "127.0.0.1:%d" % free_port(), var: value}
        p = subprocess.run([BIN, "serve"], env=base_env(self.dir, env), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, text=True, errors="replace")
        out = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
        self.assertEqual(p.returncode, 2, "%s=%s: exit %d, output %r" % (var, value, p.returncode, out))
        self.assertEqual(len(out), 1, "%s=%s: expected one line, got %r" % (var, value, out))
        self.assertIn(var, out[0])

    def test_bad_rate_limits(self):
        for v in ("read", "read=5", "read=abc/min", "read=0/min", "read=5/fortnight", "read=5/min:0",
                  "read=5/min:x", "READ=5/min", "read=5/min,read=6/min", "=5/min", "read=5/25h"):
            with self.subTest(value=v):
                self.config_error("HEARTH_RATE_LIMITS", v)

    def test_bad_redis_down(self):
        self.config_error("HEARTH_RATE_LIMIT_REDIS_DOWN", "maybe")

    def test_good_values_start(self):
        env = {"HEARTH_RATE_LIMITS": " read=600/min, write=60/min:10 ,auth=10/minute",
               "HEARTH_RATE_LIMIT_REDIS_DOWN": "deny"}
        srv = harness.Server(env=env)
        try:
            srv.start()
            r = srv.request("GET", READS)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers.get("ratelimit-limit"), "600")
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    harness.main()
