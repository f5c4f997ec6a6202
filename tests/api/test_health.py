"""Health, metrics, common headers, HEAD, request ids and CORS."""
import re
import time
import unittest

import harness
from harness import ServerTestCase, REQUEST_ID_RE


class HealthTest(ServerTestCase):
    def test_live(self):
        r = self.request("GET", "/health/live")
        self.assertEqual(r.status, 200)
        self.assert_common_headers(r)
        self.assertEqual(r.json, {"status": "ok"})

    def test_ready(self):
        r = self.request("GET", "/health/ready")
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        self.assertEqual(r.json["status"], "ok")
        self.assertIsInstance(r.json["checks"], dict)
        self.assertEqual(r.json["checks"]["database"]["status"], "ok")

    def test_api_health(self):
        r = self.request("GET", "/api/health")
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        self.assertEqual(r.json["status"], "ok")
        self.assertIsInstance(r.json["version"], str)
        self.assertTrue(r.json["version"])
        self.assertEqual(r.json["database"], harness.BACKEND)

    def test_head_on_get_routes(self):
        for path in ("/health/live", "/health/ready", "/api/health", "/openapi.json",
                     "/api/properties", "/metrics"):
            g = self.request("GET", path)
            h = self.request("HEAD", path)
            self.assertEqual(h.status, g.status, "HEAD %s -> %r, GET -> %r" % (path, h, g))
            self.assertEqual(h.raw, b"", "HEAD %s has a body" % path)
            self.assertIn("x-request-id", h.headers)
            self.assertEqual(h.headers.get("x-content-type-options"), "nosniff", path)
            self.assertEqual(h.headers.get("x-frame-options"), "DENY", path)
            self.assertEqual(h.headers.get("content-type"), g.headers.get("content-type"), path)
            if path in ("/health/live", "/openapi.json"):
                self.assertEqual(h.headers.get("content-length"), g.headers.get("content-length"),
                                 "HEAD %s Content-Length differs from GET" % path)

    def test_head_then_get_on_one_connection(self):
        # a HEAD response must not carry a body that would desync the next response
        s = self.server.connect()
        try:
            s.sendall(b"HEAD /health/live HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: second\r\n\r\n")
            rd = harness.RawReader(s)
            a = rd.read_response(head=True)
            b = rd.read_response()
            self.assertEqual(a.status, 200)
            self.assertEqual(b.status, 200)
            self.assertEqual(b.headers.get("x-request-id"), "second")
            self.assertEqual(b.json(), {"status": "ok"})
        finally:
            s.close()

    def test_request_id_echoed(self):
        for rid in ("abc-123", "A.b_c-9", "x" * 128):
            r = self.request("GET", "/health/live", headers={"X-Request-ID": rid})
            self.assertEqual(r.headers.get("x-request-id"), rid)

    def test_request_id_invalid_replaced(self):
        for rid in ("has space", "x" * 129, "semi;colon", "slash/y", "<script>"):
            r = self.request("GET", "/health/live", headers={"X-Request-ID": rid})
            got = r.headers.get("x-request-id")
            self.assertNotEqual(got, rid)
            self.assertTrue(got and REQUEST_ID_RE.match(got), "generated id %r" % got)

    def test_request_ids_unique(self):
        ids = {self.request("GET", "/health/live").headers["x-request-id"] for _ in range(20)}
        self.assertEqual(len(ids), 20)

    def test_request_id_on_error(self):
        r = self.request("GET", "/no/such/route", headers={"X-Request-ID": "err-req-1"})
        err = self.assert_error(r, 404, "not_found")
        self.assertEqual(err["request_id"], "err-req-1")

    def test_metrics(self):
        for _ in range(3):
            self.request("GET", "/health/live")
        r = self.request("GET", "/metrics")
        self.assertEqual(r.status, 200, repr(r))
        ctype = r.headers.get("content-type", "").replace(" ", "").lower()
        self.assertTrue(ctype.startswith("text/plain;version=0.0.4"), ctype)
        self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
        text = r.raw.decode()
        for name in ("hearth_http_requests_total", "hearth_http_request_duration_seconds",
                     "hearth_http_in_flight", "hearth_http_connections",
                     "hearth_store_pool_size", "hearth_store_pool_in_use"):
            self.assertRegex(text, r"(?m)^# TYPE %s " % name, name)
        self.assertRegex(text, r"(?m)^# TYPE hearth_http_requests_total counter$")
        self.assertRegex(text, r"(?m)^# TYPE hearth_http_request_duration_seconds histogram$")
        self.assertRegex(text, r'(?m)^hearth_http_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d+')
        self.assertRegex(text, r"(?m)^hearth_http_request_duration_seconds_sum(\{[^}]*\})? [0-9.e+-]+$")
        self.assertRegex(text, r"(?m)^hearth_http_request_duration_seconds_count(\{[^}]*\})? \d+$")
        live = [l for l in text.splitlines() if l.startswith("hearth_http_requests_total{")
                and "/health/live" in l and 'method="GET"' in l and 'status="200"' in l]
        self.assertTrue(live, "no hearth_http_requests_total series for GET /health/live 200")
        self.assertGreaterEqual(float(live[0].rsplit(" ", 1)[1]), 3)
        # every sample line is name{labels} value
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+$', line)

    def test_metrics_histogram_consistent(self):
        for _ in range(3):
            self.request("GET", "/api/properties?limit=1")
        text = self.request("GET", "/metrics").raw.decode()
        series = {}
        counts = {}
        for l in text.splitlines():
            m = re.match(r'^hearth_http_request_duration_seconds_bucket\{(.*)\} (\S+)$', l)
            if m:
                labels = m.group(1)
                le = re.search(r'le="([^"]+)"', labels).group(1)
                key = re.sub(r',?le="[^"]+"', "", labels)
                series.setdefault(key, []).append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
            m = re.match(r'^hearth_http_request_duration_seconds_count(?:\{(.*)\})? (\S+)$', l)
            if m:
                counts[m.group(1) or ""] = float(m.group(2))
        self.assertTrue(series)
        for key, buckets in series.items():
            les = [b[0] for b in buckets]
            self.assertEqual(les, sorted(les), key)
            vals = [b[1] for b in buckets]
            self.assertEqual(vals, sorted(vals), "buckets not cumulative for %s" % key)
            self.assertEqual(les[-1], float("inf"))
            if key in counts:
                self.assertEqual(vals[-1], counts[key], "+Inf bucket != _count for %s" % key)

    def test_metrics_gauges(self):
        s = self.server.connect()
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            harness.RawReader(s).read_response()
            text = self.request("GET", "/metrics").raw.decode()
        finally:
            s.close()

        def val(name):
            m = re.search(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % name, text)
            self.assertIsNotNone(m, name)
            return float(m.group(1))
        self.assertGreaterEqual(val("hearth_http_connections"), 2)  # ours and the /metrics one
        self.assertGreaterEqual(val("hearth_http_in_flight"), 1)    # the /metrics request itself
        self.assertGreaterEqual(val("hearth_store_pool_size"), 1)
        self.assertGreaterEqual(val("hearth_store_pool_in_use"), 0)
        self.assertLessEqual(val("hearth_store_pool_in_use"), val("hearth_store_pool_size"))

    def test_metrics_counts_increase(self):
        def count():
            text = self.request("GET", "/metrics").raw.decode()
            total = 0.0
            for l in text.splitlines():
                if l.startswith("hearth_http_requests_total{") and "/api/health" in l and 'status="200"' in l:
                    total += float(l.rsplit(" ", 1)[1])
            return total
        before = count()
        for _ in range(4):
            self.assertEqual(self.request("GET", "/api/health").status, 200)
        # a request is counted once its response is written, which the client can see first: the
        # last one may be counted a moment after its answer arrived
        deadline = time.time() + 5
        while count() - before < 4 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(count() - before, 4)

    def test_metrics_unknown_paths_do_not_become_labels(self):
        for i in range(5):
            self.request("GET", "/zz-unknown-%d-qwerty" % i)
            self.request("GET", "/api/properties/%d" % (987650 + i))
        text = self.request("GET", "/metrics").raw.decode()
        labels = " ".join(re.findall(r"\{[^}]*\}", text))
        self.assertNotIn("qwerty", labels, "raw unknown paths leak into metric labels")
        self.assertNotIn("98765", labels, "raw ids leak into metric labels")


CORS_ORIGIN = "https://app.example"


class CorsTest(ServerTestCase):
    ENV = {"HEARTH_CORS_ORIGINS": CORS_ORIGIN + ",https://other.example"}

    def test_allowed_origin(self):
        r = self.request("GET", "/health/live", headers={"Origin": CORS_ORIGIN})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("access-control-allow-origin"), CORS_ORIGIN)
        self.assertIn("origin", [v.strip().lower() for v in r.headers.get("vary", "").split(",")])

    def test_allowed_origin_on_error(self):
        r = self.request("GET", "/api/properties/424242", headers={"Origin": CORS_ORIGIN})
        self.assert_error(r, 404, "not_found")
        self.assertEqual(r.headers.get("access-control-allow-origin"), CORS_ORIGIN)

    def test_other_origin(self):
        r = self.request("GET", "/health/live", headers={"Origin": "https://evil.example"})
        self.assertEqual(r.status, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)

    def test_origin_prefix_not_allowed(self):
        for o in ("https://app.example.evil.com", "https://app.exampl", "http://app.example"):
            r = self.request("GET", "/health/live", headers={"Origin": o})
            self.assertNotIn("access-control-allow-origin", r.headers, o)

    def test_preflight(self):
        r = self.request("OPTIONS", "/api/properties", headers={
            "Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(r.raw, b"")
        self.assertEqual(r.headers.get("access-control-allow-origin"), CORS_ORIGIN)
        methods = [m.strip().upper() for m in r.headers.get("access-control-allow-methods", "").split(",")]
        self.assertIn("POST", methods)
        self.assertIn("x-request-id", r.headers)

    def test_preflight_allows_request_headers(self):
        r = self.request("OPTIONS", "/api/properties/1", headers={
            "Origin": CORS_ORIGIN, "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type, if-match"})
        self.assertEqual(r.status, 204, repr(r))
        allowed = [h.strip().lower() for h in r.headers.get("access-control-allow-headers", "").split(",")]
        self.assertIn("content-type", allowed)
        self.assertIn("if-match", allowed)

    def test_browser_can_read_etag_and_request_id(self):
        r = self.request("GET", "/api/properties", headers={"Origin": CORS_ORIGIN})
        exposed = [h.strip().lower() for h in r.headers.get("access-control-expose-headers", "").split(",")]
        for h in ("etag", "x-request-id", "location"):
            self.assertIn(h, exposed)

    def test_preflight_item_route(self):
        r = self.request("OPTIONS", "/api/properties/1", headers={
            "Origin": CORS_ORIGIN, "Access-Control-Request-Method": "PATCH"})
        self.assertEqual(r.status, 204, repr(r))
        methods = [m.strip().upper() for m in r.headers.get("access-control-allow-methods", "").split(",")]
        self.assertIn("PATCH", methods)

    def test_preflight_disallowed_origin(self):
        r = self.request("OPTIONS", "/api/properties", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertNotIn("access-control-allow-origin", r.headers)


class NoCorsTest(ServerTestCase):
    def test_no_acao_without_config(self):
        r = self.request("GET", "/health/live", headers={"Origin": CORS_ORIGIN})
        self.assertEqual(r.status, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)


if __name__ == "__main__":
    harness.main()
