"""harness: spawns a real `hearth serve` on a free port against a temporary data directory and
gives API tests small helpers to talk to it over real HTTP.

A test class derives from ServerTestCase and sets LOAD_DATA (import the Ames and Sacramento
fixtures first) and ENV (extra environment for the server). One server runs per class; teardown
sends SIGTERM and asserts that the server exits 0. Standard library only.
"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HEARTH_BIN") or os.path.join(ROOT, "build", "hearth")
FIXTURES = os.environ.get("HEARTH_FIXTURES") or os.path.join(ROOT, "tests", "fixtures")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# HEARTH_TEST_PG: the URL of a PostgreSQL database the suite may create databases beside (set by
# `make test` from scripts/services.sh). When set, every data directory gets its own fresh
# database, so each server and the CLI commands run against it see exactly what they would see
# with SQLite in that directory.
TEST_PG = os.environ.get("HEARTH_TEST_PG")
TEST_REDIS = os.environ.get("HEARTH_TEST_REDIS")  # with it, every server uses Redis too
BACKEND = "postgres" if TEST_PG else "sqlite"
_pg_databases = {}


def pg_database_for(data_dir):
    name = _pg_databases.get(data_dir)
    if name is None:
        name = "t_%d_%d" % (os.getpid(), len(_pg_databases))
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", TEST_PG, "-c", "CREATE DATABASE %s" % name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        _pg_databases[data_dir] = name
    base, _, query = TEST_PG.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


SCRIPTS = os.environ.get("HEARTH_SCRIPTS") or os.path.join(ROOT, "scripts")


def services(*args):
    """Runs scripts/services.sh ARGS (start, stop DIR, pg-stop DIR, redis-start DIR, ...); returns stdout."""
    return subprocess.run([os.path.join(SCRIPTS, "services.sh")] + list(args), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60).stdout


def start_services():
    """A PostgreSQL and Redis of the caller's own (to stop or break without disturbing other tests):
    returns {"DATABASE_URL", "REDIS_URL", "HEARTH_SERVICES_DIR"}; stop with services("stop", dir)."""
    env = {}
    for line in services("start").splitlines():
        k, _, v = line.replace("export ", "", 1).partition("=")
        env[k] = v
    return env


TEST_JWT_SECRET = "test-secret-for-hearth-api-tests-0123456789abcdef"
ADMIN_EMAIL = "admin@hearth.test"
ADMIN_PASSWORD = "admin-password-1"
_DEFAULT = object()


def base_env(data_dir, extra=None):
    env = dict(os.environ)
    # never inherit settings of a developer's shell that would change what we test
    for k in list(env):
        if k.startswith("HEARTH_") and k not in ("HEARTH_BIN", "HEARTH_FIXTURES"):
            del env[k]
        elif k in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT", "MODEL_SERVICE_URL"):
            del env[k]
    env["HEARTH_DATA_DIR"] = data_dir
    env["HEARTH_LOG_LEVEL"] = "warn"
    # password hashing turned down so tests stay fast; one token secret so instances share tokens
    env["HEARTH_ARGON2_OPS"] = "1"
    env["HEARTH_ARGON2_MEM_KB"] = "64"
    env["HEARTH_JWT_SECRET"] = TEST_JWT_SECRET
    if TEST_PG:
        env["DATABASE_URL"] = pg_database_for(data_dir)
    if TEST_REDIS:
        env["REDIS_URL"] = TEST_REDIS
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def sql(server, statement):
    """Runs one SQL statement on the server's database (SQLite file, or PostgreSQL with psql)."""
    url = base_env(server.data_dir, server.extra_env).get("DATABASE_URL", "")
    if url.startswith("postgres"):
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", statement], check=True,
                       stdout=subprocess.DEVNULL)
        return
    import sqlite3
    db = sqlite3.connect(os.path.join(server.data_dir, "hearth.db"), timeout=10)
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


def query(server, statement):
    """The first column of the first row of a query on the server's database, as text."""
    url = base_env(server.data_dir, server.extra_env).get("DATABASE_URL", "")
    if url.startswith("postgres"):
        return subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", url, "-c", statement], check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()
    import sqlite3
    db = sqlite3.connect(os.path.join(server.data_dir, "hearth.db"), timeout=10)
    try:
        row = db.execute(statement).fetchone()
        return "" if row is None else str(row[0])
    finally:
        db.close()


def run_cli(args, data_dir, extra_env=None, timeout=60, stdin=None):
    """Runs `hearth ARGS` to completion; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([BIN] + list(args), env=base_env(data_dir, extra_env),
                          stdin=subprocess.DEVNULL if stdin is None else stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True, errors="replace")


def import_fixtures(data_dir):
    for name, fmt in (("ames_small.csv", "ames"), ("sacramento_small.csv", "sacramento")):
        path = os.path.join(FIXTURES, name)
        r = run_cli(["import", path, "--format", fmt], data_dir)
        if r.returncode != 0:
            raise RuntimeError("hearth import %s --format %s exited %d\nstdout: %s\nstderr: %s"
                               % (path, fmt, r.returncode, r.stdout[-2000:], r.stderr[-2000:]))


class Resp(tuple):
    """(status, headers, data): headers is a dict with lower-cased names (repeated headers
    joined by ", "), data is the parsed JSON for JSON responses and the body bytes otherwise.
    .raw is always the body bytes; .json is the parsed body or None."""

    def __new__(cls, status, headers, raw_body, reason=""):
        data = raw_body
        parsed = None
        ctype = headers.get("content-type", "")
        if raw_body and ctype.split(";")[0].strip().lower() == "application/json":
            try:
                parsed = json.loads(raw_body.decode("utf-8"))
                data = parsed
            except (ValueError, UnicodeDecodeError):
                parsed = None
        self = super().__new__(cls, (status, headers, data))
        self.raw = raw_body
        self.json = parsed
        self.reason = reason
        return self

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])
    data = property(lambda self: self[2])

    def __repr__(self):
        body = self.raw[:600]
        return "<HTTP %s %r %r>" % (self.status, self.headers, body)


def _headers_dict(items):
    d = {}
    for k, v in items:
        k = k.lower()
        d[k] = d[k] + ", " + v if k in d else v
    return d


class Server:
    def __init__(self, env=None, load_data=False, data_dir=None, args=None, host="127.0.0.1"):
        self.host = host
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="hearth-api-")
        self.extra_env = dict(env or {})
        self.load_data = load_data
        self.args = list(args or [])
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.data_dir, "server-%d.log" % id(self))

    def start(self):
        if not os.path.exists(BIN):
            raise RuntimeError("HEARTH_BIN %s does not exist (build first)" % BIN)
        if self.load_data:
            import_fixtures(self.data_dir)
            self.load_data = False
        self.port = free_port()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "%s:%d" % (self.host, self.port)] + self.args,
            env=base_env(self.data_dir, self.extra_env),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hearth serve exited with %d during start-up:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health/live")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return self
                last = "status %d" % r.status
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("hearth serve did not answer GET /health/live with 200 within %ss (%s):\n%s"
                           % (START_TIMEOUT, last, self.log_tail()))

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig` and waits; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        try:
            self.log.close()
        except Exception:
            pass
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- clients -------------------------------------------------------------------------------

    def metric(self, name):
        """The value of a Prometheus metric summed over its label sets (None when absent): e.g. the
        cache counters, which have one line per cache tier."""
        total = None
        for line in self.request("GET", "/metrics").raw.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    # --- accounts ------------------------------------------------------------------------------

    def admin_token(self, fresh=False):
        """An access token of the test admin (admin@hearth.test), made with `hearth user create`
        and a login on first use, then kept (fresh=True logs in again)."""
        tok = getattr(self, "_admin_token", None)
        if tok and not fresh:
            return tok
        r = run_cli(["user", "create", "--email", ADMIN_EMAIL, "--role", "admin", "--password", ADMIN_PASSWORD,
                     "--full-name", "Test Admin"], self.data_dir, self.extra_env)
        if r.returncode not in (0, 1):  # 1: it exists already (another server on this database)
            raise RuntimeError("hearth user create exited %d: %s" % (r.returncode, r.stderr))
        self._admin_token = self.login(ADMIN_EMAIL, ADMIN_PASSWORD)["access_token"]
        return self._admin_token

    def login(self, email, password):
        r = self.request("POST", "/api/auth/login", body={"email": email, "password": password}, token=None)
        if r.status != 200:
            raise RuntimeError("login as %s: %r" % (email, r))
        return r.json

    def user(self, role, email=None, password="user-password-1"):
        """A new active user with `role`: registered, promoted by the admin when not a buyer, logged
        in. Returns a dict with id, email, password, access_token, refresh_token."""
        email = email or "%s-%s@hearth.test" % (role, os.urandom(6).hex())
        r = self.request("POST", "/api/auth/register",
                         body={"email": email, "password": password, "full_name": role.title() + " User"}, token=None)
        if r.status != 201:
            raise RuntimeError("register %s: %r" % (email, r))
        uid = r.json["id"]
        if role != "buyer":
            r = self.request("PATCH", "/api/users/%d" % uid, body={"role": role}, token=self.admin_token())
            if r.status != 200:
                raise RuntimeError("make %s an %s: %r" % (email, role, r))
        tokens = self.login(email, password)
        return dict(tokens, id=uid, email=email, password=password)

    def request(self, method, path, body=None, headers=None, timeout=15, token=_DEFAULT):
        """token: a bearer token to send; None sends none; left out, requests other than GET, HEAD
        and OPTIONS carry the test admin's (unless `headers` has an Authorization)."""
        hdrs = dict(headers or {})
        if token is _DEFAULT:
            token = None
            if method not in ("GET", "HEAD", "OPTIONS") and not any(k.lower() == "authorization" for k in hdrs):
                token = self.admin_token()
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        payload = body
        if body is not None and not isinstance(body, (bytes, bytearray, str)):
            payload = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            payload = body.encode()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=payload, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return Resp(r.status, _headers_dict(r.getheaders()), data, r.reason)
        finally:
            c.close()

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def raw(self, data, timeout=10, responses=1):
        """Sends raw bytes on a new connection and returns the raw bytes of up to `responses`
        responses (or everything until the server closes or `timeout` passes)."""
        s = self.connect(timeout)
        try:
            try:
                s.sendall(data)
            except OSError:
                pass
            reader = RawReader(s, timeout)
            out = b""
            for _ in range(responses):
                try:
                    r = reader.read_response()
                except (OSError, EOFError, ValueError):
                    out += reader.drain()
                    break
                out += r.raw
            return out
        finally:
            s.close()


class RawReader:
    """Reads HTTP/1.1 responses from a socket, framing them by Content-Length or chunked."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.buf = b""
        self.timeout = timeout
        self.eof = False

    def _fill(self):
        if self.eof:
            raise EOFError("connection closed")
        self.sock.settimeout(self.timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += chunk

    def drain(self):
        out, self.buf = self.buf, b""
        return out

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        out, self.buf = self.buf[:i + 2], self.buf[i + 2:]
        return out

    def read_response(self, head=False):
        """Returns a RawResponse; skips 1xx interim responses."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n\r\n")
            head_bytes, self.buf = self.buf[:i + 4], self.buf[i + 4:]
            lines = head_bytes.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("bad status line %r" % lines[0])
            status = int(parts[1])
            hdrs = _headers_dict(l.split(":", 1) for l in lines[1:] if ":" in l)
            hdrs = {k: v.strip() for k, v in hdrs.items()}
            if 100 <= status < 200:
                continue
            body = b""
            if head or status in (204, 304):
                pass
            elif "chunked" in hdrs.get("transfer-encoding", "").lower():
                raw_body = b""
                while True:
                    line = self._line()
                    raw_body += line
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:
                            t = self._line()
                            raw_body += t
                            if t == b"\r\n":
                                break
                        break
                    data = self._take(size + 2)
                    raw_body += data
                    body += data[:-2]
                head_bytes += raw_body
            elif "content-length" in hdrs:
                body = self._take(int(hdrs["content-length"]))
                head_bytes += body
            else:
                while True:
                    try:
                        self._fill()
                    except EOFError:
                        break
                body = self.drain()
                head_bytes += body
            return RawResponse(status, hdrs, body, head_bytes)


class RawResponse:
    def __init__(self, status, headers, body, raw):
        self.status, self.headers, self.body, self.raw = status, headers, body, raw

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<RAW %d %r %r>" % (self.status, self.headers, self.body[:400])


def parse_status(raw_bytes):
    """Status code of the first response in raw bytes, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw_bytes)
    return int(m.group(1)) if m else None


def wait_closed(sock, timeout):
    """Reads and discards until the peer closes; True if it closed within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([sock], [], [], left)
        if r:
            try:
                if not sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                pass


class ServerTestCase(unittest.TestCase):
    LOAD_DATA = False
    ENV = {}
    ARGS = []
    LISTEN_HOST = "127.0.0.1"
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(env=cls.ENV, load_data=cls.LOAD_DATA, args=cls.ARGS, host=cls.LISTEN_HOST)
        try:
            cls.server.start()
            cls.prepare()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def prepare(cls):
        """Per-class setup that needs the running server (tearDownClass does not run when
        setUpClass fails, so do it here and the server is still cleaned up)."""

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        try:
            was_alive = srv.alive()
            code = srv.stop()
            if not was_alive:
                raise AssertionError("server died during the tests (exit %r):\n%s"
                                     % (srv.proc.returncode, srv.log_tail()))
            if code != 0:
                raise AssertionError("server did not exit 0 within %ss of SIGTERM (exit %r):\n%s"
                                     % (STOP_TIMEOUT, code, srv.log_tail()))
        finally:
            srv.cleanup()

    # --- helpers -------------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=15, token=_DEFAULT):
        return self.server.request(method, path, body, headers, timeout, token)

    @property
    def auth(self):
        """The test admin's Authorization header line, for raw requests that write."""
        return b"Authorization: Bearer " + self.server.admin_token().encode() + b"\r\n"

    def raw(self, data, timeout=10, responses=1):
        return self.server.raw(data, timeout, responses)

    def get_json(self, path, status=200, headers=None):
        r = self.request("GET", path, headers=headers)
        self.assertEqual(r.status, status, "GET %s -> %r" % (path, r))
        self.assertIsNotNone(r.json, "GET %s: body is not JSON: %r" % (path, r))
        return r.json

    def assert_common_headers(self, resp, json_body=True):
        h = resp.headers
        rid = h.get("x-request-id")
        self.assertTrue(rid and REQUEST_ID_RE.match(rid), "bad X-Request-ID %r in %r" % (rid, resp))
        self.assertEqual(h.get("x-content-type-options", "").lower(), "nosniff", repr(resp))
        self.assertEqual(h.get("x-frame-options", "").upper(), "DENY", repr(resp))
        if json_body:
            ctype = h.get("content-type", "")
            self.assertEqual(ctype.split(";")[0].strip().lower(), "application/json", repr(resp))

    def assert_error(self, resp, status, code, field=None):
        """The body is exactly {"error":{"code","message","request_id"[,"details"]}} and
        X-Request-ID equals error.request_id. `field`: a details entry must name it."""
        if isinstance(resp, RawResponse):
            st, hdrs, body = resp.status, resp.headers, resp.body
        else:
            st, hdrs, body = resp[0], resp[1], resp.raw
        self.assertEqual(st, status, "expected %d %s, got %r" % (status, code, resp))
        self.assert_common_headers(resp)
        try:
            doc = json.loads(body.decode("utf-8"))
        except Exception:
            self.fail("error body is not JSON: %r" % (resp,))
        self.assertIsInstance(doc, dict)
        self.assertEqual(set(doc.keys()), {"error"}, "error body has other top-level keys: %r" % doc)
        err = doc["error"]
        self.assertIsInstance(err, dict)
        keys = set(err.keys())
        self.assertTrue({"code", "message", "request_id"} <= keys, "error lacks keys: %r" % doc)
        self.assertTrue(keys <= {"code", "message", "request_id", "details"},
                        "error has unexpected keys: %r" % doc)
        self.assertEqual(err["code"], code, "wrong error code: %r" % doc)
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"], "empty message: %r" % doc)
        self.assertIsInstance(err["request_id"], str)
        self.assertEqual(hdrs.get("x-request-id"), err["request_id"],
                         "X-Request-ID header differs from error.request_id: %r" % (resp,))
        if "details" in err:
            self.assertIsInstance(err["details"], list)
            for d in err["details"]:
                self.assertIsInstance(d, dict, repr(doc))
                self.assertTrue({"field", "message"} <= set(d.keys()), "bad detail %r" % d)
                self.assertIsInstance(d["message"], str)
        if field is not None:
            fields = [d.get("field") for d in err.get("details", [])]
            self.assertIn(field, fields, "no detail for field %r in %r" % (field, doc))
        return err

    def fetch_all(self, query="", limit=100, sort=None):
        """Every item of GET /api/properties?query, following next_cursor; asserts no repeats."""
        items = []
        seen = set()
        cursor = None
        pages = 0
        while True:
            qs = ["limit=%d" % limit]
            if query:
                qs.append(query)
            if sort:
                qs.append("sort=" + sort)
            if cursor:
                qs.append("cursor=" + urlquote(cursor))
            path = "/api/properties?" + "&".join(qs)
            r = self.request("GET", path)
            self.assertEqual(r.status, 200, "GET %s -> %r" % (path, r))
            doc = r.json
            self.assertEqual(set(doc.keys()), {"items", "next_cursor"}, repr(doc)[:300])
            self.assertLessEqual(len(doc["items"]), limit)
            for it in doc["items"]:
                self.assertNotIn(it["id"], seen, "id %d repeated while paging %s" % (it["id"], path))
                seen.add(it["id"])
                items.append(it)
            cursor = doc["next_cursor"]
            pages += 1
            self.assertLess(pages, 1000, "pagination does not end")
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
        return items


class OwnServicesTestCase(unittest.TestCase):
    """Servers on a PostgreSQL and Redis of the class's own, which its tests may stop and break
    without disturbing the rest of the suite. Runs in the PostgreSQL pass of `make test` only.
    INSTANCES servers share the services; ENV is added to their environment; IMPORT (a fixture
    file in Ames format) is imported before the first one starts."""
    INSTANCES = 1
    ENV = {}
    IMPORT = None

    @classmethod
    def setUpClass(cls):
        if not TEST_PG:
            raise unittest.SkipTest("the PostgreSQL pass of make test sets HEARTH_TEST_PG")
        env = start_services()
        cls.dir = env["HEARTH_SERVICES_DIR"]
        cls.own = dict({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]}, **cls.ENV)
        cls.servers = []
        try:
            for i in range(cls.INSTANCES):
                server = Server(env=cls.own)
                cls.servers.append(server)
                if i == 0 and cls.IMPORT:
                    r = run_cli(["import", os.path.join(FIXTURES, cls.IMPORT), "--format", "ames"],
                                server.data_dir, cls.own)
                    assert r.returncode == 0, r.stderr
                server.start()
        except Exception:
            for server in cls.servers:
                server.cleanup()
            services("stop", cls.dir)
            raise

    @classmethod
    def tearDownClass(cls):
        codes = [server.stop() for server in cls.servers]
        for server in cls.servers:
            server.cleanup()
        services("stop", cls.dir)
        assert codes == [0] * len(codes), "hearth exited %r" % codes


def urlquote(s):
    from urllib.parse import quote
    return quote(s, safe="")


def valid_property(**over):
    p = {
        "title": "Test house",
        "description": "A test listing",
        "price": 250000.5,
        "location": "123 Test St, Ames, IA",
        "city": "Ames",
        "state": "IA",
        "zip": "50010",
        "latitude": 42.03,
        "longitude": -93.62,
        "bedrooms": 3,
        "bathrooms": 2.5,
        "size_sqft": 1500,
        "lot_size_sqft": 8000,
        "year_built": 1995,
        "amenities": ["garage"],
        "property_type": "single_family",
        "status": "active",
    }
    for k, v in over.items():
        if v is Ellipsis:
            p.pop(k, None)
        else:
            p[k] = v
    return p


def main():
    unittest.main(verbosity=1)
