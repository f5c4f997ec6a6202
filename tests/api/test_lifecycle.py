"""Process lifecycle: graceful shutdown, configuration errors, restart with the same data, import."""
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Server, RawReader, run_cli, base_env, free_port, BIN, valid_property


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-life-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
            try:
                s.log.close()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, env=None, load_data=False):
        s = Server(env=env, load_data=load_data, data_dir=self.dir)
        self.servers.append(s)
        s.start()
        return s

    def test_sigterm_with_idle_keep_alive(self):
        srv = self.start()
        s = srv.connect()
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(RawReader(s).read_response().status, 200)
        code = srv.stop(signal.SIGTERM, timeout=15)
        s.close()
        self.assertEqual(code, 0, "exit code after SIGTERM with an open keep-alive connection:\n" + srv.log_tail())
        with self.assertRaises(OSError):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            c.close()

    def test_sigterm_with_half_sent_request(self):
        srv = self.start(env={"HEARTH_HEADER_TIMEOUT_MS": "60000"})
        s = srv.connect()
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.2)
        code = srv.stop(signal.SIGTERM, timeout=15)
        s.close()
        self.assertEqual(code, 0, srv.log_tail())

    def test_sigterm_while_busy(self):
        srv = self.start(load_data=True)
        socks = []
        for i in range(10):
            s = srv.connect()
            s.sendall(b"GET /api/properties?limit=100 HTTP/1.1\r\nHost: t\r\n\r\n")
            socks.append(s)
        code = srv.stop(signal.SIGTERM, timeout=15)
        for s in socks:
            # whatever was answered must be a complete response (no torn bytes)
            try:
                rd = RawReader(s, 5)
                r = rd.read_response()
                self.assertEqual(r.status, 200)
            except (EOFError, ConnectionResetError, socket.timeout):
                pass
            s.close()
        self.assertEqual(code, 0, srv.log_tail())

    def test_sigint_exits_cleanly(self):
        srv = self.start()
        self.assertEqual(srv.stop(signal.SIGINT, timeout=15), 0, srv.log_tail())

    def test_restart_keeps_data(self):
        srv = self.start()
        r = srv.request("POST", "/api/properties", valid_property(title="Survives restart", price=199999.99))
        self.assertEqual(r.status, 201, repr(r))
        pid = r.json["id"]
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start()
        g = srv2.request("GET", "/api/properties/%d" % pid)
        self.assertEqual(g.status, 200, repr(g))
        self.assertEqual(g.json["title"], "Survives restart")
        self.assertIn(b"199999.99", g.raw)
        # ids keep increasing after a restart
        r2 = srv2.request("POST", "/api/properties", valid_property(title="After restart"))
        self.assertGreater(r2.json["id"], pid)
        self.assertEqual(srv2.stop(), 0)

    def test_import_is_idempotent(self):
        harness.import_fixtures(self.dir)
        harness.import_fixtures(self.dir)
        srv = self.start()
        seen = set()
        cursor = None
        while True:
            path = "/api/properties?limit=100" + ("&cursor=" + harness.urlquote(cursor) if cursor else "")
            r = srv.request("GET", path)
            self.assertEqual(r.status, 200)
            for it in r.json["items"]:
                self.assertNotIn(it["id"], seen)
                seen.add(it["id"])
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        self.assertEqual(len(seen), 80, "importing the 40+40 fixture rows twice should leave 80 rows")
        keys = set()
        for pid in list(seen)[:80]:
            p = srv.request("GET", "/api/properties/%d" % pid).json
            self.assertIsNotNone(p["source"])
            self.assertIsNotNone(p["external_id"])
            keys.add((p["source"], p["external_id"]))
        self.assertEqual(len(keys), 80)
        self.assertEqual(srv.stop(), 0)

    def test_import_missing_file(self):
        r = run_cli(["import", self.dir + "/nope.csv", "--format", "ames"], self.dir)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue((r.stdout + r.stderr).strip())

    def test_import_bad_format(self):
        r = run_cli(["import", harness.FIXTURES + "/ames_small.csv", "--format", "zillow"], self.dir)
        self.assertNotEqual(r.returncode, 0)

    def config_error(self, var, value):
        env = {"HEARTH_LISTEN": "127.0.0.1:%d" % free_port()}
        env[var] = value
        p = subprocess.run([BIN, "serve"], env=base_env(self.dir, env), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, text=True, errors="replace")
        out = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
        self.assertEqual(p.returncode, 2, "%s=%s: exit %d, output %r" % (var, value, p.returncode, out))
        self.assertEqual(len(out), 1, "%s=%s: expected one line, got %r" % (var, value, out))
        self.assertIn(var, out[0])
        return out[0]

    def test_config_errors(self):
        for var, value in (("HEARTH_THREADS", "abc"), ("HEARTH_THREADS", "0"), ("HEARTH_THREADS", "-3"),
                           ("HEARTH_THREADS", "4x"), ("HEARTH_MAX_BODY", "lots"), ("HEARTH_LOG_LEVEL", "loud"),
                           ("HEARTH_LOG_FORMAT", "xml"), ("HEARTH_LISTEN", "nonsense"),
                           ("HEARTH_LISTEN", "127.0.0.1:99999"), ("HEARTH_HEADER_TIMEOUT_MS", "soon"),
                           ("HEARTH_IDLE_TIMEOUT_MS", "-1"), ("HEARTH_CORS_ORIGINS", "not a url")):
            with self.subTest(var=var, value=value):
                self.config_error(var, value)

    def test_listen_flag_overrides_env(self):
        port = free_port()
        srv = Server(env={"HEARTH_LISTEN": "127.0.0.1:1"}, data_dir=self.dir)
        self.servers.append(srv)
        srv.start()  # Server passes --listen with a free port; it must win over the env
        self.assertEqual(srv.request("GET", "/health/live").status, 200)
        self.assertEqual(srv.stop(), 0)

    def test_port_in_use(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        try:
            p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:%d" % port], env=base_env(self.dir),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                out, err = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                self.fail("serve on a port already in use did not exit")
            self.assertNotEqual(p.returncode, 0)
            self.assertTrue((out + err).strip(), "no message when the port is in use")
        finally:
            busy.close()

    def test_version(self):
        r = run_cli(["version"], self.dir)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"\d+\.\d+\.\d+")

    def test_unknown_command(self):
        r = run_cli(["frobnicate"], self.dir)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue((r.stdout + r.stderr).strip())


if __name__ == "__main__":
    harness.main()
