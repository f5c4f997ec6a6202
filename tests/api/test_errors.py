"""Error responses: one shape for every error, the right status and code, Allow on 405."""
import json

import harness
from harness import ServerTestCase, valid_property


def allow_set(resp):
    return {m.strip().upper() for m in resp.headers.get("allow", "").split(",") if m.strip()}


class ErrorsTest(ServerTestCase):
    def test_unknown_routes(self):
        for path in ("/nope", "/api/nope", "/api/properties/1/nope", "/API/PROPERTIES", "/health/live/x",
                     "/api/properties/1/2/3", "/%7e"):
            with self.subTest(path=path):
                self.assert_error(self.request("GET", path), 404, "not_found")

    def test_unknown_route_other_methods(self):
        for m in ("POST", "DELETE", "PATCH", "PUT"):
            r = self.request(m, "/no/such/thing", b"{}", {"Content-Type": "application/json"})
            self.assert_error(r, 404, "not_found")

    def test_method_not_allowed_item(self):
        r = self.request("PUT", "/api/properties/1", json.dumps(valid_property()).encode(),
                         {"Content-Type": "application/json"})
        self.assert_error(r, 405, "method_not_allowed")
        self.assertEqual(allow_set(r), {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}, r.headers.get("allow"))

    def test_method_not_allowed_collection(self):
        r = self.request("DELETE", "/api/properties")
        self.assert_error(r, 405, "method_not_allowed")
        self.assertEqual(allow_set(r), {"GET", "HEAD", "POST", "OPTIONS"}, r.headers.get("allow"))
        r = self.request("PATCH", "/api/properties", b"{}", {"Content-Type": "application/json"})
        self.assert_error(r, 405, "method_not_allowed")

    def test_method_not_allowed_health(self):
        for path in ("/health/live", "/health/ready", "/api/health", "/openapi.json"):
            r = self.request("POST", path, b"{}", {"Content-Type": "application/json"})
            self.assert_error(r, 405, "method_not_allowed")
            self.assertTrue({"GET", "HEAD"} <= allow_set(r), r.headers.get("allow"))
            self.assertNotIn("POST", allow_set(r))

    def test_unknown_method(self):
        out = self.raw(b"BREW /api/properties HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertIn(harness.parse_status(out), (400, 405, 501), out[:300])

    def test_options_without_cors_lists_allow(self):
        r = self.request("OPTIONS", "/api/properties/1")
        self.assertIn(r.status, (200, 204), repr(r))
        self.assertEqual(allow_set(r), {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"})

    def test_bad_percent_encoding_in_path(self):
        for path in ("/api/properties/%zz", "/api/properties/%", "/health/%4", "/api/%GGproperties"):
            with self.subTest(path=path):
                self.assert_error(self.request("GET", path), 400, "bad_request")

    def test_bad_percent_encoding_in_query(self):
        for qs in ("limit=%zz", "%zz=1", "q=%", "q=100%"):
            with self.subTest(qs=qs):
                self.assert_error(self.request("GET", "/api/properties?" + qs), 400, "bad_request")

    def test_percent_encoded_path_routes(self):
        # %2F in an id segment must not be treated as a path separator into another route
        r = self.request("GET", "/api/properties/1%2Fnope")
        self.assertIn(r.status, (400, 404))
        self.assert_error(r, r.status, "bad_request" if r.status == 400 else "not_found")

    def test_query_with_plus_and_utf8(self):
        r = self.request("GET", "/api/properties?city=New+York&location=%C3%BCber")
        self.assertEqual(r.status, 200, repr(r))

    def test_invalid_utf8_in_query(self):
        r = self.request("GET", "/api/properties?city=%FF%FE")
        self.assert_error(r, 400, "bad_request")

    def test_malformed_json(self):
        r = self.request("POST", "/api/properties", b'{"title": "x",', {"Content-Type": "application/json"})
        self.assert_error(r, 400, "bad_request")

    def test_unsupported_media_type(self):
        r = self.request("POST", "/api/properties", b'{"title":"x"}', {"Content-Type": "text/json"})
        self.assert_error(r, 415, "unsupported_media_type")

    def test_validation_error_details(self):
        r = self.request("POST", "/api/properties", valid_property(price=-5))
        err = self.assert_error(r, 422, "validation_failed", "price")
        self.assertTrue(err["details"])

    def test_not_found_body_shape(self):
        r = self.request("GET", "/api/properties/123456789", headers={"X-Request-ID": "nf-1"})
        err = self.assert_error(r, 404, "not_found")
        self.assertEqual(err["request_id"], "nf-1")

    def test_errors_do_not_leak_internals(self):
        for path in ("/api/properties?cursor=%27%3B--", "/api/properties?q=%27%22%29%28",
                     "/api/properties/1%27"):
            r = self.request("GET", path)
            self.assertLess(r.status, 500, "%s -> %r" % (path, r))
            low = r.raw.lower()
            for word in (b"sqlite", b"syntax error", b"select ", b".c:", b"segfault"):
                self.assertNotIn(word, low, "%s leaks %r: %r" % (path, word, r))

    def test_head_error_has_no_body(self):
        r = self.request("HEAD", "/api/properties/123456789")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.raw, b"")
        self.assertIn("x-request-id", r.headers)

    def test_http11_requires_one_host(self):
        # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host or with several
        for req in (b"GET /health/live HTTP/1.1\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
            out = self.raw(req)
            self.assertEqual(harness.parse_status(out), 400, "%r -> %r" % (req, out[:120]))
        # HTTP/1.0 needs no Host
        self.assertEqual(harness.parse_status(self.raw(b"GET /health/live HTTP/1.0\r\n\r\n")), 200)

    def test_security_headers_everywhere(self):
        for method, path in (("GET", "/nope"), ("PUT", "/api/properties/1"), ("GET", "/api/properties?limit=0"),
                             ("GET", "/api/properties?limit=x"), ("GET", "/api/properties"), ("GET", "/health/live")):
            r = self.request(method, path)
            self.assert_common_headers(r)


if __name__ == "__main__":
    harness.main()
