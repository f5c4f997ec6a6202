"""Connection semantics found by review: pipelined requests are all answered when the client
half-closes after sending them, trailer fields never become headers, a client's Connection: close
is honoured on every error, HTTP/1.0 keep-alive is echoed, and a client that stops reading its
responses is dropped instead of pinning memory."""
import socket
import time

import harness
from harness import ServerTestCase, RawReader, wait_closed


class ConnectionTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_IDLE_TIMEOUT_MS": "1000", "HEARTH_CACHE_MB": "0"}

    def test_half_close_after_pipelined_requests(self):
        # both requests go to the worker pool, so the end of stream arrives while the first runs
        s = self.server.connect()
        try:
            s.sendall(b"GET /api/properties/1 HTTP/1.1\r\nHost: t\r\nX-Request-ID: p1\r\n\r\n"
                      b"GET /api/properties/2 HTTP/1.1\r\nHost: t\r\nX-Request-ID: p2\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            reader = RawReader(s, 10)
            first, second = reader.read_response(), reader.read_response()
            self.assertEqual((first.status, first.headers["x-request-id"]), (200, "p1"))
            self.assertEqual((second.status, second.headers["x-request-id"]), (200, "p2"))
            self.assertTrue(wait_closed(s, 5), "the server closes once every request is answered")
        finally:
            s.close()

    def test_trailers_are_not_headers(self):
        body = b'{"title":"t"}'
        req = (b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Transfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\nContent-Type: application/json\r\nX-Pad: 1\r\n\r\n" % (len(body), body))
        out = self.server.raw(req)
        self.assertEqual(harness.parse_status(out), 415, out[:200])  # no Content-Type in the head

    def test_connection_close_on_error(self):
        s = self.server.connect()
        try:
            s.sendall(b"GET /%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = RawReader(s, 10).read_response()
            self.assertEqual(r.status, 400)
            self.assertEqual(r.headers.get("connection"), "close")
            self.assertTrue(wait_closed(s, 5))
        finally:
            s.close()

    def test_http10_keep_alive_echoed(self):
        s = self.server.connect()
        try:
            reader = RawReader(s, 10)
            for _ in range(2):
                s.sendall(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                r = reader.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers.get("connection", "").lower(), "keep-alive")
        finally:
            s.close()

    def test_client_that_does_not_read_is_dropped(self):
        s = self.server.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            req = b"GET /api/properties?limit=100 HTTP/1.1\r\nHost: t\r\n\r\n"
            s.settimeout(2)
            try:
                for _ in range(300):
                    s.sendall(req)
            except (socket.timeout, OSError):
                pass
            time.sleep(3)  # never read; the server's send timer is the idle timeout (1 s)
            self.assertTrue(wait_closed(s, 10), "a connection whose client never reads is closed")
        finally:
            s.close()
        self.assertEqual(self.request("GET", "/health/live").status, 200)


if __name__ == "__main__":
    harness.main()
