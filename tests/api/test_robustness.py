"""Robustness: hostile and broken input never crashes the server or wedges it."""
import os
import select
import socket
import threading
import time

import harness
from harness import ServerTestCase, RawReader, parse_status, wait_closed


class RobustnessTest(ServerTestCase):
    ENV = {"HEARTH_MAX_BODY": "1048576", "HEARTH_HEADER_TIMEOUT_MS": "2000", "HEARTH_BODY_TIMEOUT_MS": "3000"}

    def tearDown(self):
        self.assertTrue(self.server.alive(), "server died:\n" + self.server.log_tail())
        r = self.request("GET", "/health/live")
        self.assertEqual(r.status, 200)

    def expect_4xx_or_close(self, data, allowed=(400,)):
        out = self.raw(data, timeout=10)
        st = parse_status(out)
        if out:
            self.assertIn(st, allowed, "%r... -> %r" % (data[:60], out[:300]))
        return st

    def test_garbage(self):
        for junk in (b"\x00\x01\x02\x03garbage\r\n\r\n", os.urandom(4096), b"\r\n\r\n\r\n",
                     b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET / FOO/1.1\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS ClientHello
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
            self.expect_4xx_or_close(junk, (400, 405, 501, 505))

    def test_truncated_requests(self):
        for part in (b"GET /health/li", b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-A: b",
                     b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"title\":"):
            for _ in range(5):
                s = self.server.connect()
                s.sendall(part)
                s.close()
            s = self.server.connect()
            s.sendall(part)
            s.shutdown(socket.SHUT_WR)
            wait_closed(s, 10)
            s.close()

    def test_reset_mid_request(self):
        for _ in range(10):
            s = self.server.connect()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.sendall(b"GET /api/properties?limit=100 HTTP/1.1\r\nHost: t\r\n\r\n")
            s.close()  # RST while the response is being produced
        time.sleep(0.2)

    def test_nul_in_header(self):
        for req in (b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Bad\x00Name: v\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Bad: va\x00lue\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: ab\x00cd\r\n\r\n"):
            out = self.raw(req)
            self.assertEqual(parse_status(out), 400, "%r -> %r" % (req, out[:200]))

    def test_nul_in_path(self):
        out = self.raw(b"GET /health/\x00live HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(parse_status(out), 400, out[:200])
        r = self.request("GET", "/api/properties?city=a%00b")
        self.assertIn(r.status, (200, 400), repr(r))

    def test_bad_header_syntax(self):
        for req in (b"GET /health/live HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: t\r\n : v\r\n\r\n",
                    b"GET /health/live HTTP/1.1\nHost: t\n\n\x01"):
            self.expect_4xx_or_close(req, (400, 200))

    def test_request_line_1mb(self):
        s = self.server.connect()
        try:
            data = b"GET /" + b"a" * (1024 * 1024) + b" HTTP/1.1\r\nHost: t\r\n\r\n"
            got = b""
            for i in range(0, len(data), 65536):
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
                try:
                    s.sendall(data[i:i + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
            try:
                s.settimeout(10)
                got = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                pass
            if got:
                self.assertIn(parse_status(got), (400, 414, 431), got[:200])
        finally:
            s.close()

    def test_header_1mb(self):
        s = self.server.connect()
        try:
            data = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Huge: " + b"h" * (1024 * 1024) + b"\r\n\r\n"
            for i in range(0, len(data), 65536):
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
                try:
                    s.sendall(data[i:i + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
            try:
                s.settimeout(10)
                got = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                got = b""
            if got:
                self.assertEqual(parse_status(got), 431, got[:200])
        finally:
            s.close()

    def test_body_100mb(self):
        total = 100 * 1024 * 1024
        s = self.server.connect()
        sent = 0
        got = b""
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % total)
            block = b" " * 65536
            s.setblocking(False)
            deadline = time.monotonic() + 30
            while sent < total and time.monotonic() < deadline:
                r, w, _ = select.select([s], [s], [], 1)
                if r:
                    try:
                        d = s.recv(65536)
                    except (ConnectionResetError, BlockingIOError):
                        break
                    if not d:
                        break
                    got += d
                    break
                if w:
                    try:
                        sent += s.send(block)
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        break
            s.setblocking(True)
            s.settimeout(10)
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                    if b"\r\n\r\n" in got:
                        break
            except (ConnectionResetError, socket.timeout):
                pass
            self.assertLess(sent, total, "server read all of a 100 MB body past a 1 MB limit")
            if got:
                self.assertEqual(parse_status(got), 413, got[:200])
        finally:
            s.close()

    def test_body_100mb_chunked(self):
        s = self.server.connect()
        sent = 0
        got = b""
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            block = b"10000\r\n" + b" " * 65536 + b"\r\n"
            s.settimeout(10)
            while sent < 100 * 1024 * 1024:
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
                try:
                    s.sendall(block)
                    sent += 65536
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    break
            try:
                got = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                pass
            self.assertLess(sent, 100 * 1024 * 1024)
            if got:
                self.assertEqual(parse_status(got), 413, got[:200])
        finally:
            s.close()

    def test_content_length_and_transfer_encoding(self):
        body = b'{"title":"x"}'
        req = (b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
               b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        out = self.raw(req)
        self.assertEqual(parse_status(out), 400, out[:300])

    def test_smuggling_variants(self):
        for req in (
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Length: -5\r\n\r\n",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Length: 5x\r\n\r\nhello",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Transfer-Encoding: gzip\r\n\r\n",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ):
            out = self.raw(req)
            st = parse_status(out)
            self.assertIn(st, (400, 501), "%r -> %r" % (req, out[:200]))

    def test_many_connections(self):
        socks = []
        try:
            for _ in range(200):
                socks.append(self.server.connect())
            for i, s in enumerate(socks[:50]):
                s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: mc-%d\r\n\r\n" % i)
            for i, s in enumerate(socks[:50]):
                r = RawReader(s).read_response()
                self.assertEqual((r.status, r.headers.get("x-request-id")), (200, "mc-%d" % i))
        finally:
            for s in socks:
                s.close()

    def test_concurrent_clients(self):
        errors = []

        def worker(n):
            try:
                for i in range(15):
                    path = ["/health/live", "/api/properties?limit=3", "/api/properties/1", "/metrics"][i % 4]
                    r = self.server.request("GET", path, headers={"X-Request-ID": "cc-%d-%d" % (n, i)})
                    if r.status >= 500 or r.headers.get("x-request-id") != "cc-%d-%d" % (n, i):
                        errors.append((path, r))
            except Exception as e:  # noqa
                errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])

    def test_deep_json(self):
        body = b"[" * 100000 + b"]" * 100000
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
        self.assertIn(r.status, (400, 413, 422), repr(r))
        body = b'{"title":' * 50000
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
        self.assertIn(r.status, (400, 413), repr(r))

    def test_huge_json_values(self):
        cases = [b'{"title":"%s","price":100,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":1}' % (b"t" * 500000),
                 b'{"title":"x","price":1e400,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":1}',
                 b'{"title":"x","price":100,"location":"x","bedrooms":99999999999999999999,"bathrooms":1,"size_sqft":1}',
                 b'{"title":"x","price":NaN,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":1}',
                 b'{"title":"x","price":100,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":1,"amenities":[%s]}'
                 % b",".join(b'"a%d"' % i for i in range(20000))]
        for body in cases:
            r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
            self.assertIn(r.status, (400, 413, 422), "%r -> %r" % (body[:80], r))
            self.assert_error(r, r.status, {400: "bad_request", 413: "payload_too_large", 422: "validation_failed"}[r.status])

    def test_expect_100_continue(self):
        body = b'{"title":"Expect","price":100,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":100}'
        s = self.server.connect()
        try:
            s.sendall(b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\n"
                      b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            select.select([s], [], [], 2)
            s.sendall(body)
            r = RawReader(s).read_response()
            self.assertEqual(r.status, 201, repr(r))
        finally:
            s.close()

    def test_mutated_requests(self):
        import random
        rnd = random.Random(1234)
        seeds = [
            b"GET /api/properties?limit=5&sort=-price&min_price=100.50 HTTP/1.1\r\nHost: t\r\nX-Request-ID: m1\r\n\r\n",
            b"POST /api/properties HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\nContent-Length: 86\r\n\r\n"
            b'{"title":"M","price":1.5,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":5,"amenities":["a"]}'[:86],
            b"PATCH /api/properties/1 HTTP/1.1\r\nHost: t\r\n" + self.auth + b"Content-Type: application/json\r\nIf-Match: \"1\"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
            b"OPTIONS /api/properties HTTP/1.1\r\nHost: t\r\nOrigin: https://x\r\nAccess-Control-Request-Method: POST\r\n\r\n",
        ]
        for i in range(300):
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 6)):
                op = rnd.randint(0, 3)
                pos = rnd.randrange(len(data))
                if op == 0:
                    data[pos] = rnd.randrange(256)
                elif op == 1:
                    del data[pos:pos + rnd.randint(1, 8)]
                elif op == 2:
                    data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
                else:
                    data[pos:pos] = rnd.choice([b"%", b"\r\n", b"\x00", b"{", b"\"", b"9" * 30, b"%ff", b"\xc3"])
            s = self.server.connect(timeout=10)
            try:
                try:
                    s.sendall(bytes(data))
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                out = b""
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        out += d
                except (ConnectionResetError, socket.timeout):
                    pass
                st = parse_status(out)
                self.assertTrue(st is None or st < 500, "mutation %d %r -> %r" % (i, bytes(data), out[:200]))
            finally:
                s.close()
            if i % 50 == 0:
                self.assertTrue(self.server.alive(), "server died on mutation %d: %r" % (i, bytes(data)))

    def test_zz_still_alive(self):
        self.assertTrue(self.server.alive())
        self.assertEqual(self.request("GET", "/health/live").status, 200)
        self.assertEqual(self.request("GET", "/health/ready").status, 200)


if __name__ == "__main__":
    harness.main()
