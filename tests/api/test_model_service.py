"""The model service (`hearth model-serve`) and its client in `hearth serve`.

ModelServeTest talks to a model service directly: /health, features of JPEG, PNG and WebP
fixtures, a batch in which one bad image fails only its own item, and the limits (413, 415, 422,
at most 32 images a batch) in hearth's error format.

FallbackTest is the acceptance scenario: a `hearth serve` with MODEL_SERVICE_URL pointing at a
running model service. Requests that need features (POST /api/ml/extract-features) keep coming
while the model service is killed with SIGKILL: every one still succeeds (in-process fallback),
none waits longer than its deadline, and the breaker opens within five failed calls (/metrics,
/health/ready). Restarted, the service is used again once the open period has passed (the probe
closes the breaker). A service that hangs (SIGSTOP) costs each call no more than its deadline.
"""
import http.client
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

import harness
from harness import BIN, FIXTURES, base_env, free_port, run_cli

MODEL_FIXTURES = os.path.join(FIXTURES, "model")
IMAGES = {  # name: (width, height)
    "rocket.jpg": (640, 427),
    "coins.png": (384, 303),
    "chelsea.webp": (451, 300),
}
MODEL = "hearth-visual-v1"
DEADLINE_S = 3.0  # HEARTH_MODEL_TIMEOUT_MS of the FallbackTest server (room for ASan on a busy machine)
OPEN_S = 3.0      # HEARTH_MODEL_BREAKER_OPEN_MS
SLACK_S = 1.0     # scheduling slack allowed over the deadline


def fixture(name):
    with open(os.path.join(MODEL_FIXTURES, name), "rb") as f:
        return f.read()


def multipart(files, fields=None):
    """files: [(field name, filename, bytes)] -> (body, content type)."""
    boundary = "hearthtest" + os.urandom(8).hex()
    out = []
    for name, value in (fields or {}).items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, name, value)).encode())
    for name, filename, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name, filename)).encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def png_header_only(width, height):
    """A PNG whose header (with a good CRC) claims width x height, and no pixels worth the name."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


class ModelService:
    """A `hearth model-serve` on a port of its own (kept across restarts)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-model-")
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "model-serve.log")
        self.log = open(self.log_path, "ab")

    def start(self, timeout=20.0):
        self.proc = subprocess.Popen([BIN, "model-serve", "--listen", "127.0.0.1:%d" % self.port],
                                     env=base_env(self.dir), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hearth model-serve exited with %d:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if self.request("GET", "/health", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("hearth model-serve did not answer /health:\n" + self.log_tail())

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log_tail(self, n=4000):
        with open(self.log_path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=15.0):
        """SIGTERM; the exit code (None when it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def cleanup(self):
        self.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return harness.Resp(r.status, harness._headers_dict(r.getheaders()), r.read(), r.reason)
        finally:
            c.close()

    def extract(self, files, path="/extract-features", fields=None):
        body, ctype = multipart(files, fields)
        return self.request("POST", path, body, {"Content-Type": ctype})


class FeatureChecks:
    assert_error = harness.ServerTestCase.assert_error
    assert_common_headers = harness.ServerTestCase.assert_common_headers

    def assert_features(self, doc, size=None):
        self.assertTrue({"embedding", "dimension", "phash", "labels", "width", "height"} <= set(doc), repr(doc)[:300])
        self.assertEqual(doc["model"], MODEL)
        self.assertEqual(doc["dimension"], 256)
        emb = doc["embedding"]
        self.assertEqual(len(emb), 256)
        for x in emb:
            self.assertIsInstance(x, (int, float))
            self.assertTrue(math.isfinite(x))
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in emb)), 1.0, delta=1e-3)
        self.assertRegex(doc["phash"], r"^[0-9a-f]{16}$")
        self.assertIsInstance(doc["labels"], list)
        for label in doc["labels"]:
            self.assertIsInstance(label, str)
        if size:
            self.assertEqual((doc["width"], doc["height"]), size)
        for c in doc["colors"]:
            self.assertRegex(c, r"^#[0-9a-f]{6}$")
        self.assertTrue(0 <= doc["brightness"] <= 255)
        self.assertIsInstance(doc["too_dark"], bool)
        self.assertIsInstance(doc["blurry"], bool)


class ModelServeTest(FeatureChecks, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = ModelService()
        try:
            cls.svc.start()
        except BaseException:
            cls.svc.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            alive = cls.svc.proc.poll() is None
            code = cls.svc.stop()
            if not alive or code != 0:
                raise AssertionError("hearth model-serve exited %r:\n%s" % (code, cls.svc.log_tail()))
        finally:
            cls.svc.cleanup()

    def test_health(self):
        r = self.svc.request("GET", "/health")
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        self.assertEqual(r.json, {"status": "ok", "model": MODEL, "dim": 256})

    def test_extract_each_format(self):
        for name, size in IMAGES.items():
            with self.subTest(image=name):
                r = self.svc.extract([("file", name, fixture(name))])
                self.assertEqual(r.status, 200, repr(r))
                self.assert_common_headers(r)
                self.assert_features(r.json, size)

    def test_extract_is_deterministic(self):
        a = self.svc.extract([("file", "a.jpg", fixture("rocket.jpg"))]).json
        b = self.svc.extract([("file", "b.jpg", fixture("rocket.jpg"))]).json
        self.assertEqual(a, b)
        c = self.svc.extract([("file", "c.png", fixture("coins.png"))]).json
        self.assertNotEqual(a["embedding"], c["embedding"])

    def test_batch_with_a_bad_item(self):
        single = {n: self.svc.extract([("file", n, fixture(n))]).json for n in IMAGES}
        files = [("file", "rocket.jpg", fixture("rocket.jpg")),
                 ("file", "notes.txt", b"this is not an image, just some text"),
                 ("file", "coins.png", fixture("coins.png")),
                 ("file", "broken.png", fixture("coins.png")[:300]),
                 ("file", "chelsea.webp", fixture("chelsea.webp"))]
        r = self.svc.extract(files, "/extract-features-batch", fields={"note": "ignored"})
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        self.assertEqual(set(r.json), {"items"})
        items = r.json["items"]
        self.assertEqual(len(items), 5)
        self.assertEqual(items[0], single["rocket.jpg"])
        self.assertEqual(items[2], single["coins.png"])
        self.assertEqual(items[4], single["chelsea.webp"])
        for i, code in ((1, "unsupported_media_type"), (3, "validation_failed")):
            self.assertEqual(set(items[i]), {"error"}, repr(items[i]))
            err = items[i]["error"]
            self.assertEqual(err["code"], code)
            self.assertTrue(err["message"])
            self.assertEqual(err["request_id"], r.headers["x-request-id"])

    def test_batch_limits(self):
        webp = fixture("chelsea.webp")
        r = self.svc.extract([("file", "%d.webp" % i, webp) for i in range(32)], "/extract-features-batch")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(len(r.json["items"]), 32)
        self.assertEqual(len({json.dumps(it) for it in r.json["items"]}), 1)
        r = self.svc.extract([("file", "%d.webp" % i, webp) for i in range(33)], "/extract-features-batch")
        self.assert_error(r, 422, "validation_failed", field="file")
        r = self.svc.extract([], "/extract-features-batch", fields={"other": "x"})
        self.assert_error(r, 422, "validation_failed", field="file")

    def test_too_large(self):
        big = b"\xff\xd8\xff\xe0" + os.urandom(20 * 1024 * 1024 + 1)
        r = self.svc.extract([("file", "big.jpg", big)])
        err = self.assert_error(r, 413, "payload_too_large")
        self.assertIn("20 MiB", err["message"])
        r = self.svc.extract([("file", "big.jpg", big), ("file", "ok.webp", fixture("chelsea.webp"))],
                             "/extract-features-batch")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["items"][0]["error"]["code"], "payload_too_large")
        self.assert_features(r.json["items"][1], IMAGES["chelsea.webp"])

    def test_unsupported_type(self):
        for data in (b"GIF89a" + b"\0" * 64, b"plain text, not an image", b"%PDF-1.4\n" + b"x" * 100):
            r = self.svc.extract([("file", "x.bin", data)])
            self.assert_error(r, 415, "unsupported_media_type")
        r = self.svc.request("POST", "/extract-features", json.dumps({"file": "x"}).encode(),
                             {"Content-Type": "application/json"})
        self.assert_error(r, 415, "unsupported_media_type")

    def test_undecodable_or_too_many_pixels(self):
        r = self.svc.extract([("file", "broken.png", fixture("coins.png")[:300])])
        self.assert_error(r, 422, "validation_failed", field="file")
        r = self.svc.extract([("file", "broken.jpg", fixture("rocket.jpg")[:2000])])
        self.assert_error(r, 422, "validation_failed", field="file")
        r = self.svc.extract([("file", "huge.png", png_header_only(10000, 6000))])  # 60 megapixels
        err = self.assert_error(r, 422, "validation_failed", field="file")
        self.assertIn("megapixels", err["message"])
        r = self.svc.extract([("file", "empty.png", b"")])
        self.assert_error(r, 422, "validation_failed", field="file")

    def test_file_field_rules(self):
        r = self.svc.extract([("image", "rocket.jpg", fixture("rocket.jpg"))])
        self.assert_error(r, 422, "validation_failed", field="file")
        r = self.svc.extract([("file", "a.jpg", fixture("rocket.jpg")), ("file", "b.png", fixture("coins.png"))])
        self.assert_error(r, 422, "validation_failed", field="file")

    def test_routes(self):
        self.assert_error(self.svc.request("GET", "/extract-features"), 405, "method_not_allowed")
        self.assert_error(self.svc.request("GET", "/api/properties"), 404, "not_found")
        r = self.svc.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn(b'hearth_model_images_total{outcome="ok"}', r.raw)
        self.assertIn(b'hearth_http_requests_total{route="/health"', r.raw)

    def test_bad_command_line(self):
        for args in (["model-serve", "--listen", "nonsense"], ["model-serve", "--bogus"]):
            r = run_cli(args, self.svc.dir, timeout=30)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr))


class ClientCase(FeatureChecks, unittest.TestCase):
    ENV = {}

    def setUp(self):
        self.server = None

    def tearDown(self):
        if self.server is not None:
            alive = self.server.alive()
            code = self.server.stop()
            tail = self.server.log_tail()
            self.server.cleanup()
            self.assertTrue(alive, "hearth serve died:\n" + tail)
            self.assertEqual(code, 0, "hearth serve exit:\n" + tail)

    def start_server(self, env):
        self.server = harness.Server(env=env)
        self.server.start()
        self.token = self.server.admin_token()

    def extract(self, name="rocket.jpg", token=harness._DEFAULT, timeout=30):
        body, ctype = multipart([("file", name, fixture(name))])
        t0 = time.monotonic()
        r = self.server.request("POST", "/api/ml/extract-features", body, {"Content-Type": ctype},
                                timeout=timeout, token=self.token if token is harness._DEFAULT else token)
        return r, time.monotonic() - t0

    def metric(self, name):
        return self.server.metric(name)

    def ready(self):
        r = self.server.request("GET", "/health/ready")
        self.assertEqual(r.status, 200, repr(r))  # the fallback keeps the instance ready
        return r.json


class DisabledTest(ClientCase):
    def test_without_a_model_service(self):
        self.start_server({})
        doc = self.ready()
        self.assertEqual(doc["checks"]["model_service"], {"status": "disabled"})
        self.assertEqual(doc["status"], "ok")
        r, _ = self.extract("coins.png")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["source"], "fallback")
        self.assertEqual(r.json["model_service"], "disabled")
        self.assert_features(r.json, IMAGES["coins.png"])
        self.assertEqual(self.metric("hearth_model_service_enabled"), 0)
        # who may call it, and what it refuses
        r, _ = self.extract(token=None)
        self.assert_error(r, 401, "unauthorized")
        buyer = self.server.user("buyer")
        r, _ = self.extract(token=buyer["access_token"])
        self.assert_error(r, 403, "forbidden")
        body, ctype = multipart([("file", "x.txt", b"not an image at all")])
        r = self.server.request("POST", "/api/ml/extract-features", body, {"Content-Type": ctype})
        self.assert_error(r, 415, "unsupported_media_type")
        body, ctype = multipart([("file", "x.png", fixture("coins.png")[:300])])
        r = self.server.request("POST", "/api/ml/extract-features", body, {"Content-Type": ctype})
        self.assert_error(r, 422, "validation_failed", field="file")
        body, ctype = multipart([], {"other": "1"})
        r = self.server.request("POST", "/api/ml/extract-features", body, {"Content-Type": ctype})
        self.assert_error(r, 422, "validation_failed", field="file")


class FallbackTest(ClientCase):
    def setUp(self):
        super().setUp()
        self.svc = ModelService()
        self.svc.start()

    def tearDown(self):
        try:
            self.svc.signal(signal.SIGCONT)
            self.svc.cleanup()
        finally:
            super().tearDown()

    def breaker(self):
        return {0: "closed", 1: "open", 2: "half_open"}[int(self.metric("hearth_model_breaker_state"))]

    def calls(self, outcome):
        for line in self.server.request("GET", "/metrics").raw.decode().splitlines():
            if line.startswith('hearth_model_calls_total{outcome="%s"} ' % outcome):
                return int(line.rsplit(" ", 1)[1])
        self.fail("no hearth_model_calls_total for %s" % outcome)

    def assert_in_time(self, results, what):
        for status, source, took, body in results:
            self.assertEqual(status, 200, "%s: a request failed: %r" % (what, body))
            self.assertLess(took, DEADLINE_S + SLACK_S,
                            "%s: a request took %.3f s, deadline %.1f s" % (what, took, DEADLINE_S))

    def test_kill_mid_run_fallback_breaker_and_recovery(self):
        self.start_server({"MODEL_SERVICE_URL": self.svc.url, "HEARTH_MODEL_TIMEOUT_MS": int(DEADLINE_S * 1000),
                           "HEARTH_MODEL_BREAKER_OPEN_MS": int(OPEN_S * 1000)})
        # 1. the service answers: features come from it, and equal the in-process ones
        direct = self.svc.extract([("file", "rocket.jpg", fixture("rocket.jpg"))]).json
        r, _ = self.extract("rocket.jpg")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["source"], "service")
        self.assertEqual(r.json["model_service"], "closed")
        self.assert_features(r.json, IMAGES["rocket.jpg"])
        self.assertEqual({k: v for k, v in r.json.items() if k not in ("source", "model_service")}, direct)
        self.assertEqual(self.breaker(), "closed")
        self.assertEqual(self.ready()["checks"]["model_service"], {"status": "closed"})
        self.assertEqual(self.metric("hearth_model_service_enabled"), 1)
        failed0 = self.calls("failed")
        self.assertEqual(failed0, 0)

        # 2. requests keep coming; the model service is killed in the middle of them
        results, stop = [], threading.Event()

        def client():
            names = list(IMAGES)
            i = 0
            while not stop.is_set():
                try:
                    r, took = self.extract(names[i % len(names)])
                    results.append((r.status, (r.json or {}).get("source"), took, r.raw[:300]))
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    results.append((None, None, 0.0, repr(e)))
                i += 1

        t = threading.Thread(target=client)
        t.start()
        try:
            deadline = time.monotonic() + 20
            while sum(1 for x in results if x[1] == "service") < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            served_before = len(results)
            self.svc.kill()  # SIGKILL, while a request is (most likely) in flight
            killed_at = time.monotonic()
            opened_at, failed_at_open = None, None
            while time.monotonic() < killed_at + 10:
                if self.breaker() == "open":
                    opened_at, failed_at_open = time.monotonic(), self.calls("failed")
                    break
                time.sleep(0.02)
            self.assertIsNotNone(opened_at, "the breaker did not open within 10 s of the kill")
            # while open: more requests, several at once, all answered in-process without a call
            burst = []

            def one():
                r, took = self.extract("coins.png")
                burst.append((r.status, (r.json or {}).get("source"), took, r.raw[:300]))
            threads = [threading.Thread(target=one) for _ in range(6)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            time.sleep(0.3)
        finally:
            stop.set()
            t.join()
        self.assertGreaterEqual(served_before, 3)
        self.assertLessEqual(failed_at_open, 5, "the breaker opened only after %d failed calls" % failed_at_open)
        self.assertGreaterEqual(failed_at_open, 1)
        self.assertLess(time.monotonic() - opened_at, OPEN_S, "the test was too slow to see the open state")
        self.assertEqual(self.calls("failed"), failed_at_open, "calls were made while the breaker was open")
        self.assertEqual(self.metric("hearth_model_breaker_opens_total"), 1)
        self.assert_in_time(results, "kill -9")
        self.assert_in_time(burst, "open breaker")
        self.assertEqual({x[1] for x in burst}, {"fallback"})
        after = [x[1] for x in results[served_before + 1:]]  # the one in flight at the kill may be either
        self.assertTrue(after, "no request was made after the kill")
        self.assertEqual(set(after), {"fallback"})
        self.assertGreater(self.calls("fallback"), failed_at_open)
        doc = self.ready()
        self.assertEqual(doc["checks"]["model_service"], {"status": "open"})
        self.assertEqual(doc["status"], "degraded")

        # 3. the service comes back: after the open period one probe closes the breaker
        self.svc.start()
        while time.monotonic() < opened_at + OPEN_S:
            time.sleep(0.05)
        sources = []
        for _ in range(10):
            r, took = self.extract("chelsea.webp")
            self.assertEqual(r.status, 200, repr(r))
            self.assertLess(took, DEADLINE_S + SLACK_S)
            sources.append(r.json["source"])
            if r.json["source"] == "service":
                break
        self.assertEqual(sources[-1], "service", "the restarted service was never used: %r" % sources)
        self.assertEqual(self.breaker(), "closed")
        doc = self.ready()
        self.assertEqual(doc["checks"]["model_service"], {"status": "closed"})
        self.assertEqual(doc["status"], "ok")

        # 4. a service that hangs (SIGSTOP: connections are accepted, nothing is answered) costs each
        # call at most its deadline, and opens the breaker after five calls
        failed_before = self.calls("failed")
        self.svc.signal(signal.SIGSTOP)
        hung = []
        for i in range(6):
            r, took = self.extract("coins.png")
            hung.append((r.status, (r.json or {}).get("source"), took, r.raw[:300]))
        self.svc.signal(signal.SIGCONT)
        self.assert_in_time(hung, "SIGSTOP")
        self.assertEqual({x[1] for x in hung}, {"fallback"})
        for status, source, took, _ in hung[:5]:
            self.assertGreater(took, DEADLINE_S * 0.8, "a call to the hung service gave up early (%.3f s)" % took)
        self.assertLess(hung[5][2], DEADLINE_S * 0.5, "the sixth call went to the service: the breaker is not open")
        self.assertEqual(self.calls("failed") - failed_before, 5)
        self.assertEqual(self.breaker(), "open")
        self.assertEqual(self.metric("hearth_model_breaker_opens_total"), 2)


if __name__ == "__main__":
    harness.main()
