"""HTTP limits: body size (Content-Length and chunked), URI length, header size and count,
header/body/idle timeouts, keep-alive and pipelining."""
import json
import select
import socket
import threading
import time

import harness
from harness import ServerTestCase, RawReader, valid_property, wait_closed

MAX_BODY = 65536


def send_until_response(sock, chunks):
    """Sends chunks one by one, stopping early when the server has answered or closed."""
    for c in chunks:
        r, _, _ = select.select([sock], [], [], 0)
        if r:
            return
        try:
            sock.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            return


def chunked(data, size):
    out = []
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
    out.append(b"0\r\n\r\n")
    return out


class LimitsTest(ServerTestCase):
    ENV = {"HEARTH_MAX_BODY": str(MAX_BODY), "HEARTH_HEADER_TIMEOUT_MS": "1000",
           "HEARTH_BODY_TIMEOUT_MS": "2000", "HEARTH_IDLE_TIMEOUT_MS": "1500"}

    def read_one(self, sock, timeout=10):
        rd = RawReader(sock, timeout)
        try:
            return rd.read_response()
        except ConnectionResetError:
            self.fail("connection reset before a response arrived")
        except EOFError:
            self.fail("connection closed before a response arrived")

    # --- bodies --------------------------------------------------------------------------------

    def test_content_length_too_large_answered_without_body(self):
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1000))
            r = self.read_one(s)
            self.assert_error(r, 413, "payload_too_large")
        finally:
            s.close()

    def test_content_length_huge_value(self):
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Content-Length: 99999999999999\r\n\r\n")
            r = self.read_one(s)
            self.assert_error(r, 413, "payload_too_large")
        finally:
            s.close()

    def padded_body(self, size):
        body = json.dumps(valid_property(title="Padded")).encode()
        return body + b" " * (size - len(body))

    def test_body_at_limit_accepted(self):
        body = self.padded_body(MAX_BODY)
        self.assertEqual(len(body), MAX_BODY)
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, repr(r))

    def test_body_one_over_limit(self):
        body = self.padded_body(MAX_BODY + 1)
        s = self.server.connect()
        try:
            head = (b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
            send_until_response(s, [head] + [body[i:i + 4096] for i in range(0, len(body), 4096)])
            r = self.read_one(s)
            self.assert_error(r, 413, "payload_too_large")
        finally:
            s.close()

    def test_chunked_too_large(self):
        data = b" " * (MAX_BODY * 2)
        s = self.server.connect()
        try:
            head = (b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
            send_until_response(s, [head, b"1\r\n{\r\n"] + chunked(data, 8192))
            r = self.read_one(s)
            self.assert_error(r, 413, "payload_too_large")
        finally:
            s.close()

    def test_chunked_huge_chunk_size(self):
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\nfffffffffff\r\n")
            r = self.read_one(s)
            self.assertIn(r.status, (400, 413), repr(r))
        finally:
            s.close()

    def test_chunked_ok(self):
        body = json.dumps(valid_property(title="Chunked house", price=123456.78)).encode()
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for c in chunked(body, 37):
                s.sendall(c)
            r = self.read_one(s)
            self.assertEqual(r.status, 201, repr(r))
            doc = r.json()
            self.assertEqual(doc["title"], "Chunked house")
            self.assertIn(b'"price":123456.78', r.body.replace(b" ", b""))
            # the connection is still usable afterwards
            s.sendall(b"GET /api/properties/%d HTTP/1.1\r\nHost: t\r\n\r\n" % doc["id"])
            r2 = RawReader(s).read_response()
            self.assertEqual(r2.status, 200)
            self.assertEqual(r2.json()["title"], "Chunked house")
        finally:
            s.close()

    def test_chunked_extensions_and_trailers(self):
        body = json.dumps(valid_property(title="Chunk ext")).encode()
        half = len(body) // 2
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n"
                      b"%x;name=value\r\n%s\r\n%X\r\n%s\r\n0\r\nX-Trailer: yes\r\n\r\n"
                      % (half, body[:half], len(body) - half, body[half:]))
            r = self.read_one(s)
            self.assertEqual(r.status, 201, repr(r))
            self.assertEqual(r.json()["title"], "Chunk ext")
        finally:
            s.close()

    def test_keep_alive_after_small_post(self):
        body = json.dumps(valid_property(title="KA")).encode()
        s = self.server.connect()
        try:
            rd = RawReader(s)
            for i in range(3):
                s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                r = rd.read_response()
                self.assertEqual(r.status, 201, repr(r))
        finally:
            s.close()

    # --- URI and headers -----------------------------------------------------------------------

    def test_uri_too_long(self):
        out = self.raw(b"GET /api/properties?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        r = RawReaderFromBytes(out)
        self.assertIsNotNone(r, out[:200])
        self.assert_error(r, 414, "uri_too_long")

    def test_uri_under_limit(self):
        path = b"/health/live?pad=" + b"a" * 7000
        out = self.raw(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        st = harness.parse_status(out)
        self.assertIsNotNone(st, out[:200])
        self.assertNotIn(st, (414, 431))
        self.assertLess(st, 500)

    def test_header_block_too_large(self):
        out = self.raw(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n")
        r = RawReaderFromBytes(out)
        self.assertIsNotNone(r, out[:200])
        self.assert_error(r, 431, "headers_too_large")

    def test_header_block_many_medium_headers(self):
        hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 400) for i in range(50))  # ~21 KB in total
        out = self.raw(b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n")
        r = RawReaderFromBytes(out)
        self.assertIsNotNone(r, out[:200])
        self.assert_error(r, 431, "headers_too_large")

    def test_header_block_under_limit(self):
        out = self.raw(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 14000 + b"\r\n\r\n")
        self.assertEqual(harness.parse_status(out), 200, out[:200])

    def test_too_many_headers(self):
        hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
        out = self.raw(b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n")
        r = RawReaderFromBytes(out)
        self.assertIsNotNone(r, out[:200])
        self.assert_error(r, 431, "headers_too_large")

    def test_many_headers_under_limit(self):
        hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(90))
        out = self.raw(b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n")
        self.assertEqual(harness.parse_status(out), 200, out[:200])

    # --- keep-alive and pipelining -------------------------------------------------------------

    def test_keep_alive(self):
        s = self.server.connect()
        try:
            rd = RawReader(s)
            for i in range(6):
                path = [b"/health/live", b"/api/properties?limit=2", b"/api/health"][i % 3]
                s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nX-Request-ID: ka-%d\r\n\r\n" % (path, i))
                r = rd.read_response()
                self.assertEqual(r.status, 200, repr(r))
                self.assertEqual(r.headers.get("x-request-id"), "ka-%d" % i)
                self.assertNotEqual(r.headers.get("connection", "").lower(), "close")
        finally:
            s.close()

    def test_pipelining(self):
        s = self.server.connect()
        try:
            reqs = [(b"/api/properties?limit=5", b"pipe-1"), (b"/health/live", b"pipe-2"),
                    (b"/api/properties/999999", b"pipe-3")]
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\n\r\n" % r for r in reqs))
            rd = RawReader(s)
            got = [rd.read_response() for _ in reqs]
            self.assertEqual([r.headers.get("x-request-id") for r in got], ["pipe-1", "pipe-2", "pipe-3"])
            self.assertEqual([r.status for r in got], [200, 200, 404])
            self.assertEqual(got[1].json(), {"status": "ok"})
            self.assertIn("items", got[0].json())
        finally:
            s.close()

    def test_pipelining_many(self):
        s = self.server.connect()
        try:
            n = 25
            data = b""
            for i in range(n):
                path = b"/api/properties?limit=1" if i % 2 else b"/health/live"
                data += b"GET %s HTTP/1.1\r\nHost: t\r\nX-Request-ID: p%d\r\n\r\n" % (path, i)
            s.sendall(data)
            rd = RawReader(s)
            ids = [rd.read_response().headers.get("x-request-id") for _ in range(n)]
            self.assertEqual(ids, ["p%d" % i for i in range(n)])
        finally:
            s.close()

    def test_pipelined_post_then_get(self):
        body = json.dumps(valid_property(title="Pipelined")).encode()
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Content-Length: %d\r\nX-Request-ID: pp-1\r\n\r\n%s"
                      b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: pp-2\r\n\r\n" % (len(body), body))
            rd = RawReader(s)
            a, b = rd.read_response(), rd.read_response()
            self.assertEqual((a.status, a.headers.get("x-request-id")), (201, "pp-1"))
            self.assertEqual((b.status, b.headers.get("x-request-id")), (200, "pp-2"))
        finally:
            s.close()

    def test_pipelining_flood(self):
        n = 400
        s = self.server.connect()
        try:
            data = b"".join(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: f%d\r\n\r\n" % i for i in range(n))
            got = []
            rd = RawReader(s)

            def reader():
                try:
                    for _ in range(n):
                        got.append(rd.read_response().headers.get("x-request-id"))
                except Exception as e:  # noqa
                    got.append(repr(e))
            t = threading.Thread(target=reader)
            t.start()
            s.sendall(data)
            t.join(30)
            self.assertEqual(got, ["f%d" % i for i in range(n)])
        finally:
            s.close()

    def body_is_not_a_request(self, first):
        """`first` is a request whose body looks like another request; the body must be consumed
        as a body (one response), then the real next request is answered."""
        smuggled = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: smuggled\r\n\r\n"
        s = self.server.connect()
        try:
            s.sendall(first % (len(smuggled), smuggled) +
                      b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: real\r\n\r\n")
            rd = RawReader(s, 10)
            a = rd.read_response()
            self.assertNotEqual(a.headers.get("x-request-id"), "smuggled")
            self.assertGreaterEqual(a.status, 400)
            try:
                b = rd.read_response()
            except (EOFError, ConnectionResetError):
                return a  # closing after an error is allowed; answering the body as a request is not
            self.assertEqual(b.headers.get("x-request-id"), "real", "body bytes were parsed as a request")
            return a
        finally:
            s.close()

    def test_body_consumed_after_404(self):
        self.body_is_not_a_request(b"POST /no/such/route HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                                   b"Content-Length: %d\r\n\r\n%s")

    def test_body_consumed_after_405(self):
        self.body_is_not_a_request(b"PUT /api/properties/1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n%s")

    def test_body_consumed_after_415(self):
        self.body_is_not_a_request(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: text/plain\r\n"
                                   b"Content-Length: %d\r\n\r\n%s")

    def test_body_consumed_after_400(self):
        self.body_is_not_a_request(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n%s")

    def test_body_on_get_consumed(self):
        smuggled = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: smuggled\r\n\r\n"
        s = self.server.connect()
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: first\r\nContent-Length: %d\r\n\r\n%s"
                      b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: real\r\n\r\n" % (len(smuggled), smuggled))
            rd = RawReader(s, 10)
            ids = []
            for _ in range(2):
                try:
                    ids.append(rd.read_response().headers.get("x-request-id"))
                except (EOFError, ConnectionResetError):
                    break
            self.assertNotIn("smuggled", ids)
        finally:
            s.close()

    def test_request_id_echoed_on_limit_errors(self):
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"X-Request-ID: big-1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (MAX_BODY * 4))
            r = self.read_one(s)
            err = self.assert_error(r, 413, "payload_too_large")
            self.assertEqual(err["request_id"], "big-1")
        finally:
            s.close()

    def test_connection_close(self):
        s = self.server.connect()
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = RawReader(s).read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(wait_closed(s, 10), "server kept the connection after Connection: close")
        finally:
            s.close()

    def test_http10(self):
        s = self.server.connect()
        try:
            s.sendall(b"GET /health/live HTTP/1.0\r\n\r\n")
            r = RawReader(s).read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"status": "ok"})
            self.assertTrue(wait_closed(s, 10), "HTTP/1.0 connection without keep-alive left open")
        finally:
            s.close()

    # --- timeouts ------------------------------------------------------------------------------

    def test_idle_keep_alive_closed(self):
        s = self.server.connect()
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(RawReader(s).read_response().status, 200)
            self.assertTrue(wait_closed(s, 12), "idle keep-alive connection was not closed")
        finally:
            s.close()

    def test_silent_connection_closed(self):
        s = self.server.connect()
        try:
            self.assertTrue(wait_closed(s, 12), "a connection that never sent anything was not closed")
        finally:
            s.close()

    def test_slow_loris(self):
        s = self.server.connect()
        state = {"closed": False, "data": b"", "sent": 0}

        def dribble():
            try:
                s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    r, _, _ = select.select([s], [], [], 0.3)
                    if r:
                        try:
                            d = s.recv(65536)
                        except (ConnectionResetError, OSError):
                            state["closed"] = True
                            return
                        if not d:
                            state["closed"] = True
                            return
                        state["data"] += d
                        continue
                    try:
                        s.sendall(b"a")
                        state["sent"] += 1
                    except (BrokenPipeError, ConnectionResetError, OSError):
                        state["closed"] = True
                        return
            finally:
                pass

        t = threading.Thread(target=dribble)
        t.start()
        served = 0
        try:
            while t.is_alive():
                r = self.request("GET", "/health/live", timeout=10)
                self.assertEqual(r.status, 200)
                served += 1
                time.sleep(0.1)
        finally:
            t.join(20)
            s.close()
        self.assertTrue(state["closed"], "slow-loris connection was never closed (sent %d bytes)" % state["sent"])
        self.assertGreaterEqual(served, 2)
        if state["data"]:
            st = harness.parse_status(state["data"])
            self.assertEqual(st, 408, state["data"][:300])
            r = RawReaderFromBytes(state["data"])
            self.assert_error(r, 408, "request_timeout")

    def test_slow_body_timeout(self):
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"title\":")
            data = b""
            deadline = time.monotonic() + 12
            closed = False
            while time.monotonic() < deadline:
                r, _, _ = select.select([s], [], [], 0.5)
                if r:
                    try:
                        d = s.recv(65536)
                    except ConnectionResetError:
                        closed = True
                        break
                    if not d:
                        closed = True
                        break
                    data += d
            self.assertTrue(closed, "a stalled body was never timed out")
            if data:
                self.assertEqual(harness.parse_status(data), 408, data[:300])
        finally:
            s.close()

    def test_server_healthy_after_limits(self):
        self.assertEqual(self.request("GET", "/health/live").status, 200)


class MaxConnectionsTest(ServerTestCase):
    ENV = {"HEARTH_MAX_CONNECTIONS": "5"}

    def test_over_limit_refused_then_recovers(self):
        held = [self.server.connect() for _ in range(5)]
        try:
            for h in held:  # each one answered, so the server has surely taken and counted it
                h.settimeout(10)
                h.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
                got = b""
                while b"\r\n\r\n" not in got:
                    chunk = h.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                self.assertEqual(harness.parse_status(got), 200, got[:200])
            s = self.server.connect()
            try:
                s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            except OSError:
                pass
            data = b""
            try:
                s.settimeout(10)
                data = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                pass
            s.close()
            # either closed without an answer, or a 503 -- never served beyond the limit, never hung
            if data:
                self.assertEqual(harness.parse_status(data), 503, data[:200])
        finally:
            for h in held:
                h.close()
        time.sleep(0.3)
        self.assertEqual(self.request("GET", "/health/live").status, 200)


def RawReaderFromBytes(data):
    """Parses the first response in `data` (bytes already read) into a RawResponse, or None."""
    class _Sock:
        def __init__(self, d):
            self.d = d

        def settimeout(self, t):
            pass

        def recv(self, n):
            out, self.d = self.d[:n], self.d[n:]
            return out
    try:
        return RawReader(_Sock(data)).read_response()
    except (EOFError, ValueError):
        return None


if __name__ == "__main__":
    harness.main()
