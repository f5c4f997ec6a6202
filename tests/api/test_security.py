"""Security: hostile input is refused with a clear 4xx in the error envelope, or taken as plain data,
and never changes or exposes anything it should not.

SQL injection strings go into every string filter of GET /api/properties (city, location, q,
property_type, amenities, sort, cursor, status), the filters of /api/users and /api/audit, and every
string field of POST/PATCH /api/properties, POST /api/auth/register, /login, /refresh, /logout and
PATCH /api/users/{id}; also into the claims of a correctly signed token. Path parameters get
traversal, NUL, signs, overflowing and wrapping numbers. Fields get oversized values, invalid UTF-8
and NUL bytes, in JSON and in the query. A 500 is never accepted, and no error body may carry
database internals. After every test the data must be as it was: the number of listings
(GET /api/health), every listing's content, the admin can still log in and the users and audit
tables still answer.
"""
import base64
import hashlib
import hmac
import json
import re
import time

import harness
from harness import ServerTestCase, valid_property, urlquote, ADMIN_EMAIL, ADMIN_PASSWORD, TEST_JWT_SECRET

# every login these tests make comes from 127.0.0.1: budgets far above what they use
GENEROUS_LOGIN_LIMITS = "account=10000/min:10000,address=10000/min:10000"

SQLI = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "1; DROP TABLE properties; --",
    "'; DROP TABLE users; --",
    "%' OR 1=1 --",
    "'",
    "\\x27",
    '" OR ""="',
    "' UNION SELECT id, email, password_hash FROM users --",
    "1 UNION SELECT NULL,NULL,NULL--",
    "admin'--",
    "') OR ('1'='1",
    "1' AND (SELECT 1 FROM pg_sleep(3)) IS NULL --",
    "'; UPDATE users SET role='admin'; --",
    "'||(SELECT password_hash FROM users LIMIT 1)||'",
    "x' AND 1=(SELECT COUNT(*) FROM users) --",
    "\\",
    "%",
    "_",
    "%%",
    "*",
    "NEAR(a b)",
    '"',
    "a OR b",
    "title:x",
    "$1",
    "?",
    ":name",
]

# injection strings that are valid emails (one @, text on both sides, no spaces): stored as data
EMAIL_SHAPED = [
    "x'or'1'='1@example.com",
    "admin'--@hearth.test",
    "a@b.c';drop-table-users;--",
    "\"or\"\"=\"@example.com",
    "x@example.com'/*",
    "%@hearth.test",
    "_dmin@hearth.test",
]

ODD_IDS = [
    "..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e", "1%2F..", "1%00", "%00", "-1", "0", "007", "+1", "%2B1", "1.0",
    "1e3", "0x1", "%201", "1%20", "99999999999999999999", "9223372036854775807", "9223372036854775808",
    "18446744073709551617", "-9223372036854775808", "1%20OR%201=1", "1'--", "1%27%20OR%20%271%27=%271",
    "1;DROP%20TABLE%20properties", "1%0d%0aX-Injected:%20yes", "1%0a", "%ff", "%c0%ae%c0%ae",
]

BAD_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"ab\xe2\x82"]
BAD_UTF8_QUERY = ["%FF%FE", "%C0%AF", "%ED%A0%80", "%F8%88%80%80%80", "%80", "ab%E2%82"]

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 414: "uri_too_long",
               415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited",
               431: "headers_too_large"}
LEAKS = (b"sqlite", b"sqlstate", b"syntax error", b"libpq", b"near \"", b"unrecognized token", b".c:",
         b"no such table", b"no such column", b"password_hash", b"$argon2")
USER_KEYS = {"id", "email", "full_name", "role", "status", "created_at", "updated_at"}
JSON = {"Content-Type": "application/json"}

# POST /api/properties string fields and their byte limits (docs/api.md)
TEXT_FIELDS = {"title": (1, 200), "description": (0, 5000), "location": (1, 255), "city": (1, 100),
               "state": (1, 50), "zip": (1, 20)}
WORD_RE = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff]+")


def slug(s):
    return "_".join(re.findall(r"[a-z0-9]+", s.lower()))


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_jwt(claims, secret=TEST_JWT_SECRET):
    signing_input = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":"))) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64u(sig)


def nbytes(s):
    return len(s.encode("utf-8"))


class SecurityTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_LOGIN_LIMITS": GENEROUS_LOGIN_LIMITS}

    @classmethod
    def prepare(cls):
        srv = cls.server
        cls.admin = srv.admin_token()
        r = srv.request("GET", "/api/health")
        assert r.status == 200, r
        cls.baseline_count = r.json["properties"]
        cls.snapshot = {it["id"]: it for it in cls.all_listings()}
        assert len(cls.snapshot) == cls.baseline_count, (len(cls.snapshot), cls.baseline_count)
        assert cls.baseline_count > 20, "the fixtures were not imported"
        cls.counter = 0

    @classmethod
    def all_listings(cls, query=""):
        items, cursor = [], None
        for _ in range(100):
            path = "/api/properties?limit=100" + ("&" + query if query else "") + \
                ("&cursor=" + urlquote(cursor) if cursor else "")
            r = cls.server.request("GET", path)
            assert r.status == 200, "GET %s -> %r" % (path, r)
            items.extend(r.json["items"])
            cursor = r.json["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("pagination does not end")

    def setUp(self):
        self.assertTrue(self.server.alive(), "server died:\n" + self.server.log_tail())
        self.addCleanup(self.check_intact)  # added first: runs after every other cleanup

    # --- helpers -----------------------------------------------------------------------------------

    def uniq(self):
        type(self).counter += 1
        return "%d-%d" % (self.counter, int(time.time() * 1000) % 100000)

    def tok(self):
        """The admin's token; when a test revoked it (it should not), fail loudly and log in again."""
        r = self.request("GET", "/api/me", token=self.admin)
        if r.status != 200:
            type(self).admin = self.server.login(ADMIN_EMAIL, ADMIN_PASSWORD)["access_token"]
            self.fail("the admin's token stopped working: %r" % (r,))
        return self.admin

    def check_intact(self):
        self.assertTrue(self.server.alive(), "server died:\n" + self.server.log_tail())
        r = self.request("GET", "/api/health")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["properties"], self.baseline_count, "the number of listings changed")
        now = {it["id"]: it for it in self.all_listings()}
        self.assertEqual(set(now), set(self.snapshot), "the set of listings changed")
        for i, it in self.snapshot.items():
            self.assertEqual(now[i], it, "listing %d changed" % i)
        t = self.server.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        me = self.request("GET", "/api/me", token=t["access_token"])
        self.assertEqual(me.status, 200, repr(me))
        self.assertEqual((me.json["email"], me.json["role"], me.json["status"]), (ADMIN_EMAIL, "admin", "active"))
        r = self.request("GET", "/api/users?role=admin&limit=100", token=t["access_token"])
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn(ADMIN_EMAIL, [u["email"] for u in r.json["items"]])
        r = self.request("GET", "/api/audit?limit=1", token=t["access_token"])
        self.assertEqual(r.status, 200, repr(r))
        self.request("POST", "/api/auth/logout", {"refresh_token": t["refresh_token"]}, token=None)

    def clean(self, r, what, allowed):
        """r is not a 5xx, is one of `allowed`, an error is the documented envelope with the code of
        its status, and no error body carries database internals."""
        self.assertLess(r.status, 500, "%s -> %r" % (what, r))
        self.assertIn(r.status, allowed, "%s -> %r" % (what, r))
        if r.status >= 400:
            self.assert_error(r, r.status, ERROR_CODES[r.status])
            low = r.raw.lower()
            for word in LEAKS:
                if word.decode() in what.lower():
                    continue  # the request itself carried it (an error message may quote the value)
                self.assertNotIn(word, low, "%s: the error leaks %r: %r" % (what, word, r))
        self.assertNotIn("x-injected", r.headers, "%s: header injection: %r" % (what, r))
        return r

    def search(self, params):
        """GET /api/properties with `params` (name -> raw value, percent-encoded here), following
        next_cursor when 200: (first response, all items or None)."""
        qs = "&".join("%s=%s" % (k, urlquote(v)) for k, v in params.items())
        r = self.request("GET", "/api/properties?limit=100&" + qs)
        if r.status != 200:
            return r, None
        items, doc = list(r.json["items"]), r.json
        while doc["next_cursor"]:
            r2 = self.request("GET", "/api/properties?limit=100&%s&cursor=%s" % (qs, urlquote(doc["next_cursor"])))
            self.assertEqual(r2.status, 200, repr(r2))
            doc = r2.json
            items.extend(doc["items"])
        return r, items

    def assert_known_items(self, items, what):
        for it in items:
            self.assertIn(it["id"], self.snapshot, "%s: unknown listing %r" % (what, it))
            self.assertEqual(it, self.snapshot[it["id"]], "%s: listing %d differs" % (what, it["id"]))

    def create_listing(self, **over):
        r = self.request("POST", "/api/properties", valid_property(**over), token=self.admin)
        return r

    def delete_later(self, pid):
        self.addCleanup(lambda: self.request("DELETE", "/api/properties/%d" % pid, token=self.admin))

    def register(self, email, password="user-password-1", full_name="Some One"):
        return self.request("POST", "/api/auth/register",
                            {"email": email, "password": password, "full_name": full_name}, token=None)

    def login(self, email, password, headers=None):
        return self.request("POST", "/api/auth/login", {"email": email, "password": password},
                            headers=headers, token=None)

    def assert_user_json(self, u):
        self.assertEqual(set(u.keys()), USER_KEYS, "user JSON keys: %r" % u)

    # --- GET /api/properties filters ---------------------------------------------------------------

    def test_city_and_location_injection_is_plain_data(self):
        for name in ("city", "location"):
            for v in SQLI:
                with self.subTest(param=name, value=v):
                    r, items = self.search({name: v})
                    self.clean(r, "%s=%r" % (name, v), (200,))
                    if name == "city":
                        want = {i for i, it in self.snapshot.items()
                                if it["city"] is not None and it["city"].lower() == v.lower()}
                    else:
                        want = {i for i, it in self.snapshot.items() if v.lower() in it["location"].lower()}
                    self.assertEqual({it["id"] for it in items}, want, "%s=%r" % (name, v))
                    self.assert_known_items(items, "%s=%r" % (name, v))

    def test_q_injection(self):
        total = len(self.snapshot)
        for v in SQLI:
            with self.subTest(q=v):
                t0 = time.monotonic()
                r, items = self.search({"q": v})
                self.assertLess(time.monotonic() - t0, 2.5, "q=%r took long: a sleep ran?" % v)
                self.clean(r, "q=%r" % v, (200, 400, 422))
                if r.status != 200:
                    continue
                self.assert_known_items(items, "q=%r" % v)
                words = [w.lower() for w in WORD_RE.findall(v)]
                if not words:
                    continue  # documented: a q without letters or digits filters nothing
                expected = 0
                for it in self.snapshot.values():
                    text = [w.lower() for w in WORD_RE.findall(
                        " ".join(x or "" for x in (it["title"], it["description"], it["location"])))]
                    if all(w in text for w in words[:-1]) and any(t.startswith(words[-1]) for t in text):
                        expected += 1
                if expected < total:
                    self.assertLess(len(items), total, "q=%r matched every listing" % v)

    def test_amenities_injection(self):
        for v in SQLI:
            with self.subTest(amenities=v):
                r, items = self.search({"amenities": v})
                self.clean(r, "amenities=%r" % v, (200, 422))
                if r.status != 200:
                    continue
                self.assert_known_items(items, "amenities=%r" % v)
                wanted = [slug(x) for x in v.split(",") if x.strip()]
                if wanted and all(wanted):
                    want = {i for i, it in self.snapshot.items() if all(w in it["amenities"] for w in wanted)}
                    self.assertEqual({it["id"] for it in items}, want, "amenities=%r" % v)

    def test_enum_filters_refuse_injection(self):
        for name in ("property_type", "status", "sort"):
            for v in SQLI:
                with self.subTest(param=name, value=v):
                    r = self.request("GET", "/api/properties?%s=%s" % (name, urlquote(v)))
                    self.clean(r, "%s=%r" % (name, v), (422,))
                    self.assert_error(r, 422, "validation_failed", name)

    def test_cursor_injection(self):
        for v in SQLI:
            with self.subTest(cursor=v):
                r = self.request("GET", "/api/properties?cursor=%s" % urlquote(v))
                self.clean(r, "cursor=%r" % v, (400,))

    def test_forged_cursors(self):
        # the documented cursor is base64url of "v1|KEY|DIR|VALUE|ID": put SQL in each part
        forged = ["v1|price|a|0 OR 1=1|1", "v1|price|a|1|1 OR 1=1", "v1|price' OR '1'='1|a|1|1",
                  "v1|price|a' OR 'a'='a|1|1", "v1|created_at|d|1; DROP TABLE properties|1",
                  "v1|created_at|d|1|1; DROP TABLE properties", "v1|price|a|-1|-1 UNION SELECT 1",
                  "v1|price|a|99999999999999999999|1", "v1|price|a|1|99999999999999999999",
                  "v1|price|a||", "v1|price|a|1|1|extra", "v1|size_sqft|a|%|_", "v1|price|a|1\x00|1"]
        for raw in forged:
            key = raw.split("|")[1].split("'")[0]
            for sort in (key, "-" + key):
                with self.subTest(cursor=raw, sort=sort):
                    c = b64u(raw)
                    r = self.request("GET", "/api/properties?sort=%s&cursor=%s" % (sort, c))
                    self.clean(r, "cursor %r" % raw, (400,))

    def test_injection_in_parameter_names(self):
        for v in SQLI[:8]:
            with self.subTest(name=v):
                r = self.request("GET", "/api/properties?limit=1&%s=1" % urlquote(v))
                self.clean(r, "name %r" % v, (200,))

    # --- POST and PATCH /api/properties ------------------------------------------------------------

    def expect_text(self, field, v):
        lo, hi = TEXT_FIELDS[field]
        return 201 if lo <= nbytes(v) <= hi else 422

    def test_create_property_injection_stored_as_data(self):
        for field in TEXT_FIELDS:
            for v in SQLI:
                with self.subTest(field=field, value=v):
                    r = self.clean(self.create_listing(**{field: v}), "POST %s=%r" % (field, v), (201, 422))
                    self.assertEqual(r.status, self.expect_text(field, v), "POST %s=%r -> %r" % (field, v, r))
                    if r.status == 422:
                        self.assert_error(r, 422, "validation_failed", field)
                        continue
                    self.delete_later(r.json["id"])
                    self.assertEqual(r.json[field], v)
                    g = self.request("GET", "/api/properties/%d" % r.json["id"])
                    self.assertEqual(g.status, 200)
                    self.assertEqual(g.json[field], v, "stored %s differs" % field)

    def test_create_property_injection_other_fields(self):
        for v in SQLI:
            with self.subTest(field="source/external_id", value=v):
                r = self.clean(self.create_listing(source=v, external_id=v), "source %r" % v, (201, 422))
                if r.status == 201:
                    self.delete_later(r.json["id"])
                    self.assertEqual((r.json["source"], r.json["external_id"]), (v, v))
            with self.subTest(field="amenities", value=v):
                r = self.clean(self.create_listing(amenities=[v]), "amenities %r" % v, (201, 422))
                self.assertEqual(r.status, 201 if slug(v) else 422, "amenities [%r] -> %r" % (v, r))
                if r.status == 201:
                    self.delete_later(r.json["id"])
                    self.assertEqual(r.json["amenities"], [slug(v)])
                else:
                    self.assert_error(r, 422, "validation_failed", "amenities")
            with self.subTest(field="image_urls", value=v):
                url = "https://img.example.com/x?" + v
                r = self.clean(self.create_listing(image_urls=[url]), "image_urls %r" % v, (201, 422))
                if r.status == 201:
                    self.delete_later(r.json["id"])
                    self.assertEqual(r.json["image_urls"], [url])
                    self.assertFalse(set(url) & set(' "<>'), "a URL with spaces, quotes or <> was accepted")
            for enum_field in ("property_type", "status"):
                with self.subTest(field=enum_field, value=v):
                    r = self.clean(self.create_listing(**{enum_field: v}), "%s %r" % (enum_field, v), (422,))
                    self.assert_error(r, 422, "validation_failed", enum_field)
            with self.subTest(field="features", value=v):
                r = self.clean(self.create_listing(features={v: v}), "features %r" % v, (201,))
                self.delete_later(r.json["id"])
                self.assertEqual(r.json["features"], {v: v})

    def test_created_injection_found_only_by_itself(self):
        """A listing whose city and location are injection strings is found by exactly that value."""
        for v in ("' OR '1'='1", "%' OR 1=1 --", "1; DROP TABLE properties; --"):
            with self.subTest(value=v):
                r = self.create_listing(city=v, location=v + " street")
                self.assertEqual(r.status, 201, repr(r))
                pid = r.json["id"]
                self.delete_later(pid)
                _, items = self.search({"city": v})
                self.assertEqual([it["id"] for it in items], [pid])
                _, items = self.search({"location": v})
                self.assertEqual([it["id"] for it in items], [pid])

    def test_patch_property_injection(self):
        r = self.create_listing()
        self.assertEqual(r.status, 201, repr(r))
        pid = r.json["id"]
        self.delete_later(pid)
        path = "/api/properties/%d" % pid
        for field in TEXT_FIELDS:
            for v in SQLI:
                with self.subTest(field=field, value=v):
                    before = self.request("GET", path, token=self.admin).json
                    r = self.clean(self.request("PATCH", path, {field: v}, token=self.admin),
                                   "PATCH %s=%r" % (field, v), (200, 422))
                    self.assertEqual(r.status, 200 if self.expect_text(field, v) == 201 else 422, repr(r))
                    after = self.request("GET", path, token=self.admin).json
                    if r.status == 200:
                        self.assertEqual(after[field], v)
                        self.assertEqual(after["version"], before["version"] + 1)
                    else:
                        self.assertEqual(after, before, "a refused PATCH changed the listing")
        for field in ("property_type", "status"):
            for v in SQLI:
                with self.subTest(field=field, value=v):
                    before = self.request("GET", path, token=self.admin).json
                    r = self.clean(self.request("PATCH", path, {field: v}, token=self.admin),
                                   "PATCH %s=%r" % (field, v), (422,))
                    self.assert_error(r, 422, "validation_failed", field)
                    self.assertEqual(self.request("GET", path, token=self.admin).json, before)

    # --- accounts ------------------------------------------------------------------------------------

    def test_register_injection_in_email(self):
        for v in SQLI:
            with self.subTest(email=v):
                r = self.clean(self.register(v), "register email %r" % v, (422,))
                self.assert_error(r, 422, "validation_failed", "email")
        for v in EMAIL_SHAPED:
            with self.subTest(email=v):
                r = self.clean(self.register(v, password="pw-" + self.uniq()), "register email %r" % v, (201,))
                self.assert_user_json(r.json)
                self.assertEqual(r.json["email"], v.lower())
                self.assertEqual((r.json["role"], r.json["status"]), ("buyer", "active"))

    def test_login_with_email_shaped_injection(self):
        for v in EMAIL_SHAPED:
            email = v.replace("@", "-%s@" % self.uniq(), 1)
            pw = "pw-%s" % self.uniq()
            with self.subTest(email=email):
                r = self.clean(self.register(email, password=pw), "register %r" % email, (201,))
                t = self.login(email, pw)
                self.clean(t, "login %r" % email, (200,))
                me = self.request("GET", "/api/me", token=t.json["access_token"])
                self.assertEqual(me.status, 200, repr(me))
                self.assertEqual(me.json["id"], r.json["id"])
                self.assertEqual(me.json["email"], email.lower())
                self.assertEqual(me.json["role"], "buyer")

    def test_register_injection_in_password_and_name(self):
        for v in SQLI:
            with self.subTest(field="password", value=v):
                email = "pw-%s@hearth.test" % self.uniq()
                r = self.clean(self.register(email, password=v), "register password %r" % v, (201, 422))
                self.assertEqual(r.status, 201 if 8 <= nbytes(v) <= 128 else 422, repr(r))
                if r.status == 422:
                    self.assert_error(r, 422, "validation_failed", "password")
                    continue
                self.assert_user_json(r.json)
                self.clean(self.login(email, v), "login with password %r" % v, (200,))
                self.clean(self.login(email, v + "x"), "login with a wrong password", (401,))
            with self.subTest(field="full_name", value=v):
                r = self.clean(self.register("fn-%s@hearth.test" % self.uniq(), full_name=v),
                               "register full_name %r" % v, (201,))
                self.assert_user_json(r.json)
                self.assertEqual(r.json["full_name"], v)
                self.assertEqual(r.json["role"], "buyer")

    def test_login_injection(self):
        for v in SQLI + ["%", "%@%", "_%", "admin@hearth.tes_", "%@hearth.test", ADMIN_EMAIL + "'--",
                         ADMIN_EMAIL + "' OR '1'='1", ADMIN_EMAIL + "'; --", "' OR email LIKE '%admin%"]:
            with self.subTest(email=v):
                for pw in (ADMIN_PASSWORD, "' OR '1'='1", v):
                    r = self.clean(self.login(v, pw), "login %r/%r" % (v, pw), (401, 422))
                    if r.status == 401:
                        self.assertEqual(r.json["error"]["message"], "invalid email or password")
        for pw in SQLI + ["%", "_" * 16, "*", ADMIN_PASSWORD + "' OR '1'='1", ADMIN_PASSWORD[:-1] + "_",
                          ADMIN_PASSWORD[:-1] + "%"]:
            with self.subTest(password=pw):
                r = self.clean(self.login(ADMIN_EMAIL, pw), "login admin with %r" % pw, (401,))
                self.assertEqual(r.json["error"]["message"], "invalid email or password")

    def test_login_forwarded_for_not_believed(self):
        # no HEARTH_TRUSTED_PROXIES: X-Forwarded-For is ignored, also when it holds SQL
        xff = "' OR 1=1 --, 10.0.0.1"
        r = self.clean(self.login(ADMIN_EMAIL, "wrong-password-1", headers={"X-Forwarded-For": xff,
                                                                           "X-Request-ID": "sec-xff-1"}),
                       "login with X-Forwarded-For", (401,))
        a = self.request("GET", "/api/audit?action=auth.login_failed&limit=100", token=self.tok())
        self.assertEqual(a.status, 200, repr(a))
        mine = [e for e in a.json["items"] if e["request_id"] == "sec-xff-1"]
        self.assertEqual(len(mine), 1, repr(a.json)[:1000])
        self.assertEqual(mine[0]["ip"], "127.0.0.1")

    def test_refresh_and_logout_injection(self):
        user = self.server.user("buyer")
        for v in SQLI + ["%", "_" * 43, "*"]:
            with self.subTest(refresh_token=v):
                r = self.request("POST", "/api/auth/refresh", {"refresh_token": v}, token=None)
                self.clean(r, "refresh %r" % v, (401, 422))
                r = self.request("POST", "/api/auth/logout", {"refresh_token": v}, token=None)
                self.clean(r, "logout %r" % v, (204, 422))
        # none of that ended a session that is not theirs
        me = self.request("GET", "/api/me", token=user["access_token"])
        self.assertEqual(me.status, 200, "an injected logout revoked another session: %r" % (me,))
        self.tok()
        r = self.request("POST", "/api/auth/refresh", {"refresh_token": user["refresh_token"]}, token=None)
        self.clean(r, "refresh after the injections", (200,))

    def test_patch_user_injection(self):
        user = self.server.user("buyer")
        path = "/api/users/%d" % user["id"]
        for v in SQLI:
            for field in ("role", "status"):
                with self.subTest(field=field, value=v):
                    r = self.clean(self.request("PATCH", path, {field: v}, token=self.admin),
                                   "PATCH user %s=%r" % (field, v), (422,))
                    self.assert_error(r, 422, "validation_failed", field)
            with self.subTest(field="full_name", value=v):
                r = self.clean(self.request("PATCH", path, {"full_name": v}, token=self.admin),
                               "PATCH user full_name=%r" % v, (200,))
                self.assert_user_json(r.json)
                self.assertEqual(r.json["full_name"], v)
        g = self.request("GET", path, token=self.tok())
        self.assertEqual((g.json["role"], g.json["status"]), ("buyer", "active"), repr(g.json))
        # the buyer's own token still works and still is a buyer's
        me = self.request("GET", "/api/me", token=user["access_token"])
        self.assertEqual((me.status, me.json["role"]), (200, "buyer"))

    def test_user_and_audit_filters_injection(self):
        for v in SQLI:
            q = urlquote(v)
            with self.subTest(value=v):
                for param in ("role", "status"):
                    r = self.request("GET", "/api/users?%s=%s" % (param, q), token=self.admin)
                    self.clean(r, "users %s=%r" % (param, v), (422,))
                self.clean(self.request("GET", "/api/users?cursor=%s" % q, token=self.admin), "users cursor=%r" % v,
                           (400,))
                self.clean(self.request("GET", "/api/users?limit=%s" % q, token=self.admin), "users limit=%r" % v,
                           (400,))
                for param in ("action", "resource_type", "resource_id"):
                    r = self.request("GET", "/api/audit?%s=%s" % (param, q), token=self.admin)
                    self.clean(r, "audit %s=%r" % (param, v), (200, 422))
                    if r.status == 200:
                        self.assertEqual(r.json["items"], [], "audit %s=%r matched entries" % (param, v))
                for param in ("actor_id", "since", "until", "cursor", "limit"):
                    r = self.request("GET", "/api/audit?%s=%s" % (param, q), token=self.admin)
                    self.clean(r, "audit %s=%r" % (param, v), (400, 422))

    def test_token_claims_injection(self):
        """Correctly signed tokens whose claims carry SQL or junk after a number are refused."""
        me = self.request("GET", "/api/me", token=self.admin).json
        claims = json.loads(b64u_decode(self.admin.split(".")[1]))
        uid, sid = me["id"], claims["sid"]
        now = int(time.time())
        base = dict(claims, iat=now, nbf=now, exp=now + 600)
        self.assertEqual(self.request("GET", "/api/me", token=make_jwt(base)).status, 200,
                         "a hand-made token with the test secret should work")
        bad = [dict(base, sub="%d' OR '1'='1" % uid), dict(base, sub="%d OR 1=1" % uid),
               dict(base, sub="%d; DROP TABLE users; --" % uid), dict(base, sub="' OR '1'='1"),
               dict(base, sub="%d.0" % uid), dict(base, sub="%dx" % uid), dict(base, sub="-%d" % uid),
               dict(base, sub=str(uid + 2 ** 64)), dict(base, sub="99999999999999999999"),
               dict(base, sid="%s OR 1=1" % sid), dict(base, sid="' OR '1'='1"), dict(base, sid=sid + 2 ** 64),
               dict(base, sid=-sid), dict(base, sid=0), dict(base, sub="0")]
        for c in bad:
            with self.subTest(sub=c["sub"], sid=c["sid"]):
                t = make_jwt(c)
                for path in ("/api/me", "/api/properties?limit=1", "/api/users?limit=1"):
                    r = self.clean(self.request("GET", path, token=t), "token %r on %s" % (c, path), (401,))
                    self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), repr(r))
        for header in ("Bearer ' OR '1'='1", "Bearer " + self.admin + "' OR '1'='1",
                       "Bearer " + self.admin + " x", "Bearer " + "a" * 8000, "Bearer %00",
                       "' OR '1'='1", "Basic YWRtaW46YWRtaW4="):
            with self.subTest(authorization=header[:40]):
                r = self.request("GET", "/api/me", headers={"Authorization": header}, token=None)
                self.clean(r, "Authorization %r" % header[:40], (400, 401))

    def test_revoked_and_disabled_tokens_refused(self):
        """After logout, and after the account is disabled, the access token is 401 on every route,
        public ones included (the contract: "its access tokens 401 everywhere")."""
        paths = ("/api/me", "/api/properties?limit=1", "/api/properties/%d" % min(self.snapshot), "/api/health",
                 "/health/live", "/health/ready", "/openapi.json", "/metrics", "/api/users?limit=1")
        out = self.server.user("agent")
        r = self.request("POST", "/api/auth/logout", {"refresh_token": out["refresh_token"]}, token=None)
        self.clean(r, "logout", (204,))
        disabled = self.server.user("agent")
        r = self.request("PATCH", "/api/users/%d" % disabled["id"], {"status": "disabled"}, token=self.admin)
        self.clean(r, "disable", (200,))
        for who, tok in (("logged out", out["access_token"]), ("disabled", disabled["access_token"])):
            for path in paths:
                with self.subTest(who=who, path=path):
                    r = self.clean(self.request("GET", path, token=tok), "%s token on %s" % (who, path), (401,))
                    self.assertIn('error="invalid_token"', r.headers.get("www-authenticate", ""), repr(r))
            with self.subTest(who=who, path="POST /api/properties"):
                r = self.request("POST", "/api/properties", valid_property(), token=tok)
                self.clean(r, "%s token creating a listing" % who, (401,))

    # --- path parameters ---------------------------------------------------------------------------

    def test_odd_property_ids(self):
        for pid in ODD_IDS:
            path = "/api/properties/" + pid
            with self.subTest(path=path):
                self.clean(self.request("GET", path), "GET " + path, (400, 404))
                self.clean(self.request("GET", path, token=self.admin), "GET (admin) " + path, (400, 404))
                self.clean(self.request("PATCH", path, {"title": "pwned"}, token=self.admin), "PATCH " + path,
                           (400, 404))
                self.clean(self.request("DELETE", path, token=self.admin), "DELETE " + path, (400, 404))
                self.clean(self.request("PATCH", path, {"title": "pwned"}, token=None), "PATCH (no token) " + path,
                           (400, 401, 404))

    def test_odd_user_ids(self):
        for uid in ODD_IDS:
            path = "/api/users/" + uid
            with self.subTest(path=path):
                self.clean(self.request("GET", path, token=self.admin), "GET " + path, (400, 404))
                self.clean(self.request("PATCH", path, {"full_name": "pwned"}, token=self.admin), "PATCH " + path,
                           (400, 404))
                self.clean(self.request("GET", path, token=None), "GET (no token) " + path, (400, 401, 404))

    def test_path_traversal(self):
        for path in ("/api/users/../../x", "/api/users/..%2F..%2Fx", "/api/properties/../users",
                     "/api/properties/..%2Fusers", "/api/properties/1/../../users", "/api/properties/%2e%2e/users",
                     "/api/./users", "/api//users", "/api/users/", "/api/audit/../users", "/api/me/../users",
                     "/api/properties/..%2F..%2F..%2Fetc%2Fpasswd", "/..%2f..%2fetc%2fpasswd", "/../../etc/passwd",
                     "/api/properties/%2F%2Fetc%2Fpasswd", "/openapi.json/../api/users"):
            with self.subTest(path=path):
                r = self.clean(self.request("GET", path, token=None), "GET " + path, (400, 401, 404))
                self.assertNotIn(b"root:", r.raw)
                self.assertNotIn(b"@hearth.test", r.raw, "user data without a token: %r" % (r,))

    def test_nul_and_raw_bytes_in_path(self):
        for target, allowed in ((b"/api/properties/1\x00", (400,)), (b"/api/properties/\x00", (400,)),
                                (b"/api/users/1\x00", (400,)), (b"/api/properties/1\xff", (400, 404)),
                                (b"/api/properties?city=\xff", (400,)), (b"/api/properties?city=a\x00b", (400,))):
            with self.subTest(target=target):
                out = self.raw(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertIn(harness.parse_status(out), allowed, "%r -> %r" % (target, out[:300]))

    # --- oversized fields ----------------------------------------------------------------------------

    def test_oversized_property_fields(self):
        big = "A" * (100 * 1024)
        for field in ("title", "description", "location", "city", "state", "zip", "source"):
            with self.subTest(field=field):
                over = {field: big}
                if field == "source":
                    over["external_id"] = "x"
                r = self.clean(self.create_listing(**over), "POST %s 100 KB" % field, (422,))
                self.assert_error(r, 422, "validation_failed", field)
        r = self.clean(self.create_listing(amenities=[big]), "amenity 100 KB", (422,))
        self.assert_error(r, 422, "validation_failed", "amenities")
        r = self.clean(self.create_listing(amenities=["a%d" % i for i in range(5000)]), "5000 amenities", (422,))
        r = self.clean(self.create_listing(features={"k": "v" * 200000}), "features 200 KB", (422,))
        self.assert_error(r, 422, "validation_failed", "features")
        pid = self.create_listing().json["id"]
        self.delete_later(pid)
        r = self.clean(self.request("PATCH", "/api/properties/%d" % pid, {"title": big}, token=self.admin),
                       "PATCH title 100 KB", (422,))
        self.assert_error(r, 422, "validation_failed", "title")

    def test_oversized_account_fields(self):
        ten = "a" * (10 * 1024)
        email10 = "a" * (10 * 1024 - 12) + "@example.com"
        for body, field in (({"email": email10, "password": "user-password-1", "full_name": "X"}, "email"),
                            ({"email": "big-pw-%s@hearth.test" % self.uniq(), "password": ten, "full_name": "X"},
                             "password"),
                            ({"email": "big-pw-%s@hearth.test" % self.uniq(), "password": "p" * 129,
                              "full_name": "X"}, "password"),
                            ({"email": "big-fn-%s@hearth.test" % self.uniq(), "password": "user-password-1",
                              "full_name": ten}, "full_name")):
            with self.subTest(field=field, size=len(body[field])):
                r = self.clean(self.request("POST", "/api/auth/register", body, token=None), "register " + field,
                               (422,))
                self.assert_error(r, 422, "validation_failed", field)
        for email, pw in ((email10, "user-password-1"), (ADMIN_EMAIL, ten), (ADMIN_EMAIL, ADMIN_PASSWORD + ten),
                          (email10, ten)):
            with self.subTest(login=(len(email), len(pw))):
                t0 = time.monotonic()
                r = self.clean(self.login(email, pw), "login %d/%d bytes" % (len(email), len(pw)), (401, 422))
                self.assertLess(time.monotonic() - t0, 5)
        for route in ("/api/auth/refresh", "/api/auth/logout"):
            with self.subTest(route=route):
                r = self.request("POST", route, {"refresh_token": ten}, token=None)
                self.clean(r, route + " 10 KB token", (401, 204, 422) if route.endswith("logout") else (401, 422))
        user = self.server.user("buyer")
        r = self.clean(self.request("PATCH", "/api/users/%d" % user["id"], {"full_name": ten}, token=self.admin),
                       "PATCH user full_name 10 KB", (422,))
        self.assert_error(r, 422, "validation_failed", "full_name")

    def test_body_over_the_limit(self):
        for path in ("/api/auth/register", "/api/auth/login", "/api/properties"):
            with self.subTest(path=path):
                out = self.raw(("POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                "Authorization: Bearer %s\r\nContent-Length: 2000000\r\n\r\n" % (path, self.admin)
                                ).encode())
                self.assertEqual(harness.parse_status(out), 413, out[:300])

    def test_oversized_query_values(self):
        for name in ("city", "location", "q", "amenities", "property_type"):
            with self.subTest(param=name):
                r = self.request("GET", "/api/properties?%s=%s" % (name, "a" * 7000))
                self.clean(r, "%s 7000 bytes" % name, (422,))
                self.assert_error(r, 422, "validation_failed", name)
                r = self.request("GET", "/api/properties?%s=%s" % (name, "a" * 9000))
                self.clean(r, "%s 9000 bytes" % name, (414,))
        r = self.request("GET", "/api/properties?cursor=" + "a" * 7000)
        self.clean(r, "cursor 7000 bytes", (400, 422))

    # --- invalid UTF-8 and NUL -----------------------------------------------------------------------

    def json_with(self, template, bad):
        """`template` (a JSON text with BAD where the raw bytes go) as bytes."""
        return template.encode().replace(b"BAD", bad)

    def body_targets(self):
        pid = self.create_listing().json["id"]
        self.delete_later(pid)
        user = self.server.user("buyer")
        return [
            ("POST", "/api/properties", '{"title":"BAD","price":1,"location":"x","bedrooms":1,"bathrooms":1,'
                                        '"size_sqft":100}'),
            ("POST", "/api/properties", '{"title":"t","price":1,"location":"x","bedrooms":1,"bathrooms":1,'
                                        '"size_sqft":100,"city":"Ames","amenities":["BAD"]}'),
            ("PATCH", "/api/properties/%d" % pid, '{"title":"BAD"}'),
            ("PATCH", "/api/properties/%d" % pid, '{"BAD":"x"}'),
            ("POST", "/api/auth/register", '{"email":"BAD@example.com","password":"user-password-1",'
                                           '"full_name":"X"}'),
            ("POST", "/api/auth/register", '{"email":"utf8-%s@example.com","password":"pass-BAD-word",'
                                           '"full_name":"X"}' % self.uniq()),
            ("POST", "/api/auth/register", '{"email":"utf8-%s@example.com","password":"user-password-1",'
                                           '"full_name":"BAD"}' % self.uniq()),
            ("POST", "/api/auth/login", '{"email":"%s","password":"BAD"}' % ADMIN_EMAIL),
            ("POST", "/api/auth/login", '{"email":"BAD%s","password":"%s"}' % (ADMIN_EMAIL, ADMIN_PASSWORD)),
            ("POST", "/api/auth/login", '{"email":"%s","password":"%sBAD"}' % (ADMIN_EMAIL, ADMIN_PASSWORD)),
            ("POST", "/api/auth/refresh", '{"refresh_token":"%sBAD"}' % user["refresh_token"]),
            ("POST", "/api/auth/logout", '{"refresh_token":"%sBAD"}' % user["refresh_token"]),
            ("PATCH", "/api/users/%d" % user["id"], '{"full_name":"BAD"}'),
            ("PATCH", "/api/users/%d" % user["id"], '{"role":"adminBAD"}'),
        ], user

    def test_invalid_utf8_in_json_strings(self):
        targets, user = self.body_targets()
        for method, path, template in targets:
            for bad in BAD_UTF8:
                with self.subTest(method=method, path=path, template=template[:40], bad=bad):
                    r = self.request(method, path, self.json_with(template, bad), JSON, token=self.admin)
                    self.clean(r, "%s %s with %r" % (method, path, bad), (400,))
        self.assert_session_untouched(user)

    def test_escaped_lone_surrogates_in_json(self):
        targets, user = self.body_targets()
        for method, path, template in targets:
            for esc in (b"\\ud800", b"\\udfff", b"\\ud800\\u0041"):
                with self.subTest(method=method, path=path, template=template[:40], esc=esc):
                    r = self.request(method, path, self.json_with(template, esc), JSON, token=self.admin)
                    self.clean(r, "%s %s with %r" % (method, path, esc), (400, 422))
        self.assert_session_untouched(user)

    def test_nul_in_json_strings(self):
        """A NUL must never cut a string short: not in an email or password at login, not in a
        refresh token, not in a role."""
        targets, user = self.body_targets()
        for method, path, template in targets:
            for nul in (b"\\u0000", b"\\u0000junk"):
                with self.subTest(method=method, path=path, template=template[:40], nul=nul):
                    r = self.request(method, path, self.json_with(template, nul), JSON, token=self.admin)
                    self.clean(r, "%s %s with %r" % (method, path, nul), (400, 422))
            with self.subTest(method=method, path=path, raw_nul=True):
                r = self.request(method, path, self.json_with(template, b"\x00"), JSON, token=self.admin)
                self.clean(r, "%s %s with a raw NUL" % (method, path), (400,))
        self.assert_session_untouched(user)
        # the admin's own credentials with a NUL and junk after them do not log in
        for email, pw in ((ADMIN_EMAIL + "\x00junk", ADMIN_PASSWORD), (ADMIN_EMAIL, ADMIN_PASSWORD + "\x00junk"),
                          (ADMIN_EMAIL + "\x00", ADMIN_PASSWORD)):
            with self.subTest(email=email, password=pw):
                self.clean(self.login(email, pw), "login with NUL", (400, 401, 422))
        # a password that would pass 8 bytes only if what follows a NUL counted
        r = self.register("nul-%s@hearth.test" % self.uniq(), password="abc\x00defghijk")
        self.clean(r, "register a password with a NUL", (400, 422))

    def assert_session_untouched(self, user):
        """The user's session survived the refresh/logout attempts with a token + junk, and the
        user's role and name did not change."""
        me = self.request("GET", "/api/me", token=user["access_token"])
        self.assertEqual(me.status, 200, "the session was revoked by a malformed request: %r" % (me,))
        self.assertEqual(me.json["role"], "buyer")
        self.assertEqual(me.json["full_name"], "Buyer User")
        r = self.request("POST", "/api/auth/refresh", {"refresh_token": user["refresh_token"]}, token=None)
        self.assertEqual(r.status, 200, "the refresh token was used up by a malformed request: %r" % (r,))

    def test_invalid_utf8_in_query(self):
        for name in ("city", "location", "q", "property_type", "amenities", "sort", "cursor", "status"):
            for bad in BAD_UTF8_QUERY:
                with self.subTest(param=name, value=bad):
                    r = self.request("GET", "/api/properties?%s=%s" % (name, bad))
                    self.clean(r, "%s=%s" % (name, bad), (400,))
        for path in ("/api/users?role=%FF", "/api/users?cursor=%C0%AF", "/api/audit?action=%FF%FE",
                     "/api/audit?resource_id=%ED%A0%80", "/api/audit?since=%FF"):
            with self.subTest(path=path):
                self.clean(self.request("GET", path, token=self.admin), path, (400,))

    def test_nul_in_query(self):
        for name, value in (("city", "Ames%00junk"), ("city", "%00"), ("location", "Ames%00"), ("q", "two%00sto"),
                            ("amenities", "garage%00pool")):
            with self.subTest(param=name, value=value):
                r = self.request("GET", "/api/properties?%s=%s&limit=100" % (name, value))
                self.clean(r, "%s=%s" % (name, value), (200, 400, 422))
                if r.status == 200 and name in ("city", "location"):
                    self.assertEqual(r.json["items"], [], "%s=%s: the NUL cut the value short" % (name, value))
        for name, value in (("property_type", "condo%00x"), ("status", "active%00"), ("sort", "price%00"),
                            ("cursor", "djF8cHJpY2V8ZHwyNzQ5NzAwMHwyNzM2%00"), ("limit", "5%00"),
                            ("min_price", "1%00")):
            with self.subTest(param=name, value=value):
                r = self.request("GET", "/api/properties?%s=%s" % (name, value))
                self.clean(r, "%s=%s" % (name, value), (400, 422))
        for path in ("/api/users?role=admin%00", "/api/users?limit=5%00", "/api/audit?actor_id=1%00",
                     "/api/audit?action=auth.login%00"):
            with self.subTest(path=path):
                r = self.request("GET", path, token=self.admin)
                self.clean(r, path, (200, 400, 422))
                if r.status == 200:
                    self.assertEqual(r.json["items"], [], "%s: the NUL cut the value short" % path)

    # --- last -----------------------------------------------------------------------------------------

    def test_zz_data_intact(self):
        """Explicitly, once more at the end (every test also checks in its cleanup)."""
        self.check_intact()
        r = self.request("GET", "/api/users?limit=100", token=self.tok())
        self.assertEqual(r.status, 200)
        for u in r.json["items"]:
            self.assert_user_json(u)


if __name__ == "__main__":
    harness.main()
