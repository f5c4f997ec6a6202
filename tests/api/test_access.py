"""Who may read /metrics: loopback by default, never a remote client, and X-Forwarded-For is
believed only from HEARTH_TRUSTED_PROXIES."""
import http.client
import socket
import unittest

import harness
from harness import ServerTestCase, Resp, _headers_dict


def non_loopback_ip():
    """An address of this machine that is not loopback, or None."""
    for probe in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((probe, 9))
            ip = s.getsockname()[0]
            s.close()
            if not ip.startswith("127.") and ip != "0.0.0.0":
                return ip
        except OSError:
            pass
    try:
        ip = socket.gethostbyname(socket.gethostname())
        if not ip.startswith("127."):
            return ip
    except OSError:
        pass
    return None


def request_via(ip, port, method, path, headers=None):
    c = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return Resp(r.status, _headers_dict(r.getheaders()), r.read(), r.reason)
    finally:
        c.close()


class MetricsAccessTest(ServerTestCase):
    LISTEN_HOST = "0.0.0.0"

    def setUp(self):
        self.ip = non_loopback_ip()
        if not self.ip:
            self.skipTest("no non-loopback address on this machine")
        try:
            request_via(self.ip, self.server.port, "GET", "/health/live")
        except OSError as e:
            self.skipTest("cannot reach the server on %s: %r" % (self.ip, e))

    def test_loopback_allowed(self):
        self.assertEqual(self.request("GET", "/metrics").status, 200)

    def test_remote_denied(self):
        r = request_via(self.ip, self.server.port, "GET", "/metrics")
        self.assertIn(r.status, (401, 403, 404), repr(r))
        self.assert_error(r, r.status, {401: "unauthorized", 403: "forbidden", 404: "not_found"}[r.status])
        self.assertNotIn(b"hearth_http", r.raw)

    def test_remote_cannot_spoof_loopback(self):
        for h in ({"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"},
                  {"Forwarded": "for=127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1, 127.0.0.1"}):
            r = request_via(self.ip, self.server.port, "GET", "/metrics", h)
            self.assertIn(r.status, (401, 403, 404), "%r -> %r" % (h, r))
            self.assertNotIn(b"hearth_http", r.raw)

    def test_remote_can_read_public_routes(self):
        r = request_via(self.ip, self.server.port, "GET", "/api/properties?limit=1")
        self.assertEqual(r.status, 200)
        r = request_via(self.ip, self.server.port, "HEAD", "/metrics")
        self.assertIn(r.status, (401, 403, 404), repr(r))


class TrustedProxyTest(ServerTestCase):
    ENV = {"HEARTH_TRUSTED_PROXIES": "127.0.0.1"}

    def test_forwarded_client_is_not_loopback(self):
        # the trusted proxy on loopback says the real client is remote: that client may not see /metrics
        r = self.request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        self.assertIn(r.status, (401, 403, 404), repr(r))
        self.assertNotIn(b"hearth_http", r.raw)

    def test_forwarded_chain_uses_rightmost_untrusted(self):
        # a client can prepend anything; the proxy appends the address it saw (203.0.113.9)
        r = self.request("GET", "/metrics", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"})
        self.assertIn(r.status, (401, 403, 404), repr(r))

    def test_no_forwarded_header_is_loopback(self):
        self.assertEqual(self.request("GET", "/metrics").status, 200)


class PublicMetricsTest(ServerTestCase):
    LISTEN_HOST = "0.0.0.0"
    ENV = {"HEARTH_METRICS_PUBLIC": "1"}

    def test_remote_allowed_when_public(self):
        ip = non_loopback_ip()
        if not ip:
            self.skipTest("no non-loopback address on this machine")
        r = request_via(ip, self.server.port, "GET", "/metrics")
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn(b"hearth_http_requests_total", r.raw)


if __name__ == "__main__":
    harness.main()
