"""Accounts and tokens (issue 4): register, login, refresh, logout, /api/me; the shape of the token
answer; access token expiry; tokens that must be refused (tampered, alg=none, HS512, another
secret, a future nbf); refresh token rotation and reuse detection; logout revocation; login
answers that do not tell whether an email exists; registration validation; the login rate limit;
the audit entries of logins; `hearth user create`; the token secret's configuration."""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import ServerTestCase, Server, run_cli, base_env, free_port, BIN, TEST_JWT_SECRET

# login budgets big enough for every login these tests make from 127.0.0.1 (the default address
# budget, 30 at once, would be used up by the users the tests create)
GENEROUS_LOGIN_LIMITS = "account=1000/min:1000,address=10000/min:10000"
USER_KEYS = {"id", "email", "full_name", "role", "status", "created_at", "updated_at"}
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
AUDIT_KEYS = {"id", "at", "actor_id", "action", "resource_type", "resource_id", "ip", "request_id", "detail"}
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
LOGIN_FAILED_MESSAGE = "invalid email or password"


# --- JWTs made by hand ---------------------------------------------------------------------------

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    """(header dict, claims dict, signature bytes) of a compact JWS."""
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), b64u_decode(s)


def make_jwt(claims, secret=TEST_JWT_SECRET, alg="HS256", header=None, sign_as=None):
    """A compact JWS with `claims`; header {"alg": alg, "typ": "JWT"} unless `header` is given.
    Signed with HMAC-SHA256/-SHA512 (`sign_as`, default: from alg) over the secret; alg none: no
    signature."""
    hdr = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = b64u(json.dumps(hdr, separators=(",", ":"))) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")))
    how = sign_as or alg
    if how.lower() == "none":
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512,
              "RS256": hashlib.sha256}[how]
    sig = hmac.new(secret.encode() if isinstance(secret, str) else secret, signing_input.encode(), digest).digest()
    return signing_input + "." + b64u(sig)


def flip_char(s, i):
    """s with the base64url character at i replaced by another one (which changes the decoded bytes:
    a character in the middle of a segment, never the last one, whose low bits may be padding)."""
    c = s[i]
    return s[:i] + ("A" if c != "A" else "B") + s[i + 1:]


class AuthBase(ServerTestCase):
    ENV = {"HEARTH_LOGIN_LIMITS": GENEROUS_LOGIN_LIMITS}

    # --- helpers -------------------------------------------------------------------------------

    def new_email(self, tag="user"):
        return "%s-%s@hearth.test" % (tag, os.urandom(6).hex())

    def register(self, email=None, password="user-password-1", full_name="Some One", status=201, **extra):
        body = {"email": email or self.new_email(), "password": password, "full_name": full_name}
        body.update(extra)
        r = self.request("POST", "/api/auth/register", body, token=None)
        self.assertEqual(r.status, status, repr(r))
        return r

    def login(self, email, password, headers=None):
        return self.request("POST", "/api/auth/login", {"email": email, "password": password},
                            headers=headers, token=None)

    def refresh(self, refresh_token, headers=None):
        return self.request("POST", "/api/auth/refresh", {"refresh_token": refresh_token},
                            headers=headers, token=None)

    def logout(self, refresh_token, token=None, headers=None):
        return self.request("POST", "/api/auth/logout", {"refresh_token": refresh_token},
                            headers=headers, token=token)

    def me(self, token):
        return self.request("GET", "/api/me", token=token)

    def admin(self):
        return self.server.admin_token()

    def assert_user(self, u):
        self.assertIsInstance(u, dict, repr(u))
        self.assertEqual(set(u.keys()), USER_KEYS, "user keys: %r" % u)
        self.assertIsInstance(u["id"], int)
        self.assertIn(u["role"], ("buyer", "agent", "admin"))
        self.assertIn(u["status"], ("active", "disabled"))
        self.assertRegex(u["created_at"], RFC3339_RE)
        self.assertRegex(u["updated_at"], RFC3339_RE)

    def assert_tokens(self, r, ttl=900):
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        t = r.json
        self.assertEqual(set(t.keys()), TOKEN_KEYS, repr(t))
        self.assertEqual(t["token_type"], "bearer")
        self.assertIsInstance(t["expires_in"], int)
        self.assertEqual(t["expires_in"], ttl)
        self.assertIsInstance(t["access_token"], str)
        self.assertIsInstance(t["refresh_token"], str)
        # refresh: 32 random bytes, base64url
        self.assertRegex(t["refresh_token"], r"^[A-Za-z0-9_-]{43}=?$")
        self.assertEqual(len(b64u_decode(t["refresh_token"].rstrip("="))), 32)
        return t

    def assert_401(self, r, token_sent=True):
        self.assert_error(r, 401, "unauthorized")
        www = r.headers.get("www-authenticate", "")
        self.assertTrue(www.startswith("Bearer"), "no WWW-Authenticate: Bearer in %r" % (r,))
        if token_sent:
            self.assertIn('error="invalid_token"', www, repr(r))
        else:
            self.assertNotIn("invalid_token", www, repr(r))

    def assert_token_refused(self, token, what=""):
        """A bad token is 401 on /api/me and on a public route too."""
        for path in ("/api/me", "/api/properties?limit=1"):
            r = self.request("GET", path, token=token)
            self.assertEqual(r.status, 401, "%s: GET %s -> %r" % (what, path, r))
            self.assert_401(r)

    def audit(self, query):
        r = self.request("GET", "/api/audit?" + query, token=self.admin())
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(set(r.json.keys()), {"items", "next_cursor"}, repr(r.json)[:300])
        return r.json["items"]

    def audit_by_request_id(self, action, request_id):
        items = [e for e in self.audit("action=%s&limit=100" % action) if e["request_id"] == request_id]
        return items


class AuthTest(AuthBase):
    # --- register ------------------------------------------------------------------------------

    def test_register(self):
        email = self.new_email("Mixed.Case").replace("hearth.test", "Hearth.TEST")
        r = self.register(email, full_name="Zoë Straße 日本")
        self.assert_common_headers(r)
        u = r.json
        self.assert_user(u)
        self.assertEqual(u["email"], email.lower())
        self.assertEqual(u["full_name"], "Zoë Straße 日本")
        self.assertEqual(u["role"], "buyer")
        self.assertEqual(u["status"], "active")
        raw = r.raw.decode().lower()
        self.assertNotIn("user-password-1", raw)
        self.assertNotIn("hash", raw)
        self.assertNotIn("argon", raw)

    def test_register_ignores_role_and_status(self):
        body = {"email": self.new_email("sneaky"), "password": "user-password-1", "full_name": "Sneaky",
                "role": "admin", "status": "disabled", "id": 1, "is_admin": True}
        r = self.request("POST", "/api/auth/register", body, token=None)
        self.assertEqual(r.status, 201, repr(r))
        self.assertEqual(r.json["role"], "buyer")
        self.assertEqual(r.json["status"], "active")
        self.assertNotEqual(r.json["id"], 1)

    def test_register_duplicate_email_case_insensitive(self):
        email = self.new_email("dup")
        self.register(email)
        for again in (email, email.upper(), email[0].upper() + email[1:]):
            with self.subTest(email=again):
                r = self.request("POST", "/api/auth/register",
                                 {"email": again, "password": "other-password-2", "full_name": "Dup"}, token=None)
                err = self.assert_error(r, 409, "conflict")
                self.assertEqual(err["message"], "email is already registered")
        # the first registration's password is still the one that works
        self.assertEqual(self.login(email, "user-password-1").status, 200)
        self.assertEqual(self.login(email, "other-password-2").status, 401)

    def test_register_validation(self):
        ok = {"email": "ok@hearth.test", "password": "good-password", "full_name": "Ok"}
        long_email = "a" * (255 - len("@example.com")) + "@example.com"
        cases = [
            ("email", {"email": "no-at-sign.example.com"}),
            ("email", {"email": "user@"}),
            ("email", {"email": "@example.com"}),
            ("email", {"email": "a@b@example.com"}),
            ("email", {"email": "a b@example.com"}),
            ("email", {"email": "ab\x01c@example.com"}),
            ("email", {"email": "ab\n@example.com"}),
            ("email", {"email": ""}),
            ("email", {"email": 42}),
            ("email", {"email": Ellipsis}),
            ("email", {"email": long_email}),
            ("password", {"password": "1234567"}),
            ("password", {"password": "ééé"}),  # 3 characters, 6 bytes
            ("password", {"password": "p" * 129}),
            ("password", {"password": ""}),
            ("password", {"password": 12345678}),
            ("password", {"password": Ellipsis}),
            ("full_name", {"full_name": Ellipsis}),
            ("full_name", {"full_name": ""}),
            ("full_name", {"full_name": "x" * 201}),
            ("full_name", {"full_name": "bad\x01name"}),
            ("full_name", {"full_name": "bad\nname"}),
            ("full_name", {"full_name": ["A"]}),
        ]
        for field, over in cases:
            with self.subTest(field=field, over=repr(over)[:60]):
                body = dict(ok, email=self.new_email("val"))
                for k, v in over.items():
                    if v is Ellipsis:
                        body.pop(k)
                    else:
                        body[k] = v
                r = self.request("POST", "/api/auth/register", body, token=None)
                self.assert_error(r, 422, "validation_failed", field)
                if isinstance(body.get("email"), str) and isinstance(body.get("password"), str):
                    self.assertNotEqual(self.login(body["email"], body["password"]).status, 200,
                                        "a refused registration created the account")

    def test_register_boundaries_accepted(self):
        email254 = "b" * (254 - len("@example.com") - 12) + os.urandom(6).hex() + "@example.com"
        self.assertEqual(len(email254), 254)
        cases = [
            dict(email=email254),
            dict(password="12345678"),
            dict(password="éééé"),  # 4 characters, 8 bytes
            dict(password="p" * 128),
            dict(full_name="n" * 200),
            dict(full_name="N"),
            dict(email="a@b"),
        ]
        for over in cases:
            with self.subTest(over=repr(over)[:60]):
                body = {"email": self.new_email("edge"), "password": "good-password", "full_name": "Edge"}
                body.update(over)
                r = self.request("POST", "/api/auth/register", body, token=None)
                self.assertEqual(r.status, 201, repr(r))
                self.assertEqual(self.login(body["email"], body["password"]).status, 200)

    def test_register_several_errors_together(self):
        r = self.request("POST", "/api/auth/register", {"email": "nope", "password": "short"}, token=None)
        err = self.assert_error(r, 422, "validation_failed")
        self.assertTrue({"email", "password", "full_name"} <= {d["field"] for d in err["details"]}, err)

    def test_register_unreadable_bodies(self):
        good = json.dumps({"email": self.new_email("body"), "password": "good-password", "full_name": "B"}).encode()
        # not JSON at all, or not UTF-8
        for body in (b"{", b"email=a@b.c&password=x", b'{"email":"\xff\xfe@example.com","password":"good-password",'
                     b'"full_name":"X"}', b'{"email":"a@example.com","password":"good-\xc3(pass","full_name":"X"}'):
            with self.subTest(body=body[:40]):
                r = self.request("POST", "/api/auth/register", body, {"Content-Type": "application/json"}, token=None)
                self.assert_error(r, 400, "bad_request")
        # JSON that is not an object
        for body in (b"[]", b"42", b'"x"', b"null"):
            with self.subTest(body=body):
                r = self.request("POST", "/api/auth/register", body, {"Content-Type": "application/json"}, token=None)
                self.assertIn(r.status, (400, 422), "%r -> %r" % (body, r))
                self.assert_error(r, r.status, "bad_request" if r.status == 400 else "validation_failed")
        # a JSON body with a content type other than JSON
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            with self.subTest(ctype=ctype):
                r = self.request("POST", "/api/auth/register", good, {"Content-Type": ctype}, token=None)
                self.assert_error(r, 415, "unsupported_media_type")
        r = self.request("POST", "/api/auth/login", good, {"Content-Type": "text/plain"}, token=None)
        self.assert_error(r, 415, "unsupported_media_type")

    # --- login -----------------------------------------------------------------------------------

    def test_login_answer(self):
        email = self.new_email("login")
        uid = self.register(email).json["id"]
        before = int(time.time())
        r = self.login(email, "user-password-1")
        after = int(time.time())
        t = self.assert_tokens(r)
        header, claims, sig = jwt_parts(t["access_token"])
        self.assertEqual(header.get("alg"), "HS256")
        self.assertTrue({"sub", "sid", "role", "iat", "nbf", "exp", "jti"} <= set(claims), claims)
        self.assertEqual(claims["sub"], str(uid))
        self.assertEqual(claims["role"], "buyer")
        self.assertEqual(claims["exp"] - claims["iat"], 900)
        self.assertTrue(before - 1 <= claims["iat"] <= after + 1, claims)
        self.assertLessEqual(claims["nbf"], claims["iat"] + 1)
        # signed with the configured secret
        h, p, s = t["access_token"].split(".")
        want = hmac.new(TEST_JWT_SECRET.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
        self.assertEqual(sig, want, "the access token is not HS256 over HEARTH_JWT_SECRET")
        # a second login: a new session, new tokens
        t2 = self.assert_tokens(self.login(email, "user-password-1"))
        self.assertNotEqual(t2["refresh_token"], t["refresh_token"])
        c2 = jwt_parts(t2["access_token"])[1]
        self.assertNotEqual(c2["jti"], claims["jti"])
        self.assertNotEqual(c2["sid"], claims["sid"])
        # the token works
        me = self.me(t["access_token"])
        self.assertEqual(me.status, 200, repr(me))
        self.assertEqual(me.json["id"], uid)

    def test_login_email_case_insensitive(self):
        email = self.new_email("case")
        self.register(email)
        self.assert_tokens(self.login(email.upper(), "user-password-1"))

    def test_login_answers_do_not_tell_accounts_apart(self):
        email = self.new_email("enum")
        uid = self.register(email, password="right-password-1").json["id"]
        disabled = self.new_email("enum-disabled")
        did = self.register(disabled, password="right-password-1").json["id"]
        r = self.request("PATCH", "/api/users/%d" % did, {"status": "disabled"}, token=self.admin())
        self.assertEqual(r.status, 200, repr(r))
        answers = {
            "unknown email": self.login(self.new_email("nobody"), "right-password-1"),
            "wrong password": self.login(email, "wrong-password-1"),
            "disabled account": self.login(disabled, "right-password-1"),
            "system account": self.login("system@hearth.local", "right-password-1"),
            "password case": self.login(email, "RIGHT-PASSWORD-1"),
            "injection": self.login("x' OR '1'='1@hearth.test", "' OR '1'='1"),
            "empty password": self.login(email, ""),
        }
        seen = set()
        for what, r in answers.items():
            with self.subTest(what=what):
                err = self.assert_error(r, 401, "unauthorized")
                self.assertEqual(err["message"], LOGIN_FAILED_MESSAGE)
                self.assertNotIn("details", err)
                self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), repr(r))
                seen.add((r.status, err["code"], err["message"], r.headers.get("www-authenticate"),
                          tuple(sorted(k for k in r.headers if k not in ("date", "x-request-id", "content-length")))))
        self.assertEqual(len(seen), 1, "login failures differ: %r" % seen)
        self.assertEqual(self.login(email, "right-password-1").status, 200)
        self.assertIsInstance(uid, int)

    def test_login_method_not_allowed(self):
        for path in ("/api/auth/login", "/api/auth/register", "/api/auth/refresh", "/api/auth/logout"):
            with self.subTest(path=path):
                r = self.request("GET", path, token=None)
                self.assert_error(r, 405, "method_not_allowed")
                self.assertIn("POST", r.headers.get("allow", ""))

    # --- /api/me ---------------------------------------------------------------------------------

    def test_me(self):
        email = self.new_email("me")
        uid = self.register(email, full_name="Me Myself").json["id"]
        t = self.assert_tokens(self.login(email, "user-password-1"))
        r = self.me(t["access_token"])
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        self.assert_user(r.json)
        self.assertEqual(r.json["id"], uid)
        self.assertEqual(r.json["email"], email)
        self.assertEqual(r.json["full_name"], "Me Myself")
        self.assertEqual(r.json["role"], "buyer")

    def test_bearer_scheme_case_insensitive(self):
        # RFC 7235: the auth scheme is case-insensitive
        t = self.server.user("buyer")["access_token"]
        for scheme in ("bearer", "BEARER"):
            r = self.request("GET", "/api/me", headers={"Authorization": scheme + " " + t}, token=None)
            self.assertEqual(r.status, 200, "%s: %r" % (scheme, r))

    def test_me_without_token(self):
        r = self.me(None)
        self.assert_401(r, token_sent=False)

    def test_me_malformed_authorization(self):
        t = self.server.user("buyer")["access_token"]
        for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer abc", "Bearer a.b", "Bearer a.b.c.d",
                      "Bearer %s%s" % (t, "x"), "Bearer !!!.???.***", "Token " + t):
            with self.subTest(value=value[:30]):
                r = self.request("GET", "/api/me", headers={"Authorization": value}, token=None)
                self.assert_error(r, 401, "unauthorized")
                self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), repr(r))

    # --- refused tokens ----------------------------------------------------------------------------

    def good_claims(self):
        """A new buyer's real token and its claims (a real session, so that only what a test
        changes makes a token bad)."""
        u = self.server.user("buyer")
        return u, jwt_parts(u["access_token"])[1]

    def test_hand_made_token_with_the_secret_works(self):
        # the control for the tests below: the same claims, signed here with the right secret
        u, claims = self.good_claims()
        tok = make_jwt(claims)
        r = self.me(tok)
        self.assertEqual(r.status, 200, "a correctly signed hand-made token was refused: %r" % (r,))
        self.assertEqual(r.json["id"], u["id"])

    def test_nbf_within_the_leeway(self):
        # nbf in the future but within the 30 s leeway (clocks that disagree a little)
        _, claims = self.good_claims()
        now = int(time.time())
        r = self.me(make_jwt(dict(claims, nbf=now + 10)))
        self.assertEqual(r.status, 200, "nbf 10 s ahead is within the leeway: %r" % (r,))

    def test_tampered_signature(self):
        u, _ = self.good_claims()
        h, p, s = u["access_token"].split(".")
        for i in (0, len(s) // 2):
            with self.subTest(i=i):
                self.assert_token_refused("%s.%s.%s" % (h, p, flip_char(s, i)), "signature char %d" % i)
        self.assert_token_refused("%s.%s." % (h, p), "no signature")
        self.assert_token_refused("%s.%s.%s" % (h, p, s[:-4]), "short signature")
        # the real token still works
        self.assertEqual(self.me(u["access_token"]).status, 200)

    def test_payload_changed_without_resigning(self):
        u, claims = self.good_claims()
        h, _, s = u["access_token"].split(".")
        forged = dict(claims, role="admin")
        p = b64u(json.dumps(forged, separators=(",", ":")))
        tok = "%s.%s.%s" % (h, p, s)
        self.assert_token_refused(tok, "role=admin without re-signing")
        r = self.request("GET", "/api/users", token=tok)
        self.assertEqual(r.status, 401, repr(r))
        forged = dict(claims, exp=claims["exp"] + 86400)
        self.assert_token_refused("%s.%s.%s" % (h, b64u(json.dumps(forged)), s), "exp changed")

    def test_alg_none(self):
        _, claims = self.good_claims()
        for alg in ("none", "None", "NONE", "nOnE"):
            with self.subTest(alg=alg):
                tok = make_jwt(claims, alg=alg)
                self.assert_token_refused(tok, "alg=%s" % alg)
                # and with a signature part that is a valid HS256 signature of the same input
                signing_input = tok[:-1]
                sig = hmac.new(TEST_JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
                self.assert_token_refused(signing_input + "." + b64u(sig), "alg=%s with a signature" % alg)
        self.assert_token_refused(make_jwt(dict(claims, role="admin"), alg="none"), "alg=none role=admin")
        # a header with no alg at all
        self.assert_token_refused(make_jwt(claims, header={"typ": "JWT"}, sign_as="HS256"), "no alg")

    def test_other_algorithms_with_the_secret(self):
        _, claims = self.good_claims()
        for alg in ("HS512", "HS384"):
            with self.subTest(alg=alg):
                self.assert_token_refused(make_jwt(claims, alg=alg), alg)
        # HS256 signature under an RS256 header (key confusion), and a lower-case alg
        self.assert_token_refused(make_jwt(claims, header={"alg": "RS256", "typ": "JWT"}, sign_as="HS256"),
                                  "RS256 header, HMAC signature")
        self.assert_token_refused(make_jwt(claims, header={"alg": "hs256", "typ": "JWT"}, sign_as="HS256"),
                                  "alg hs256")

    def test_other_secret(self):
        _, claims = self.good_claims()
        self.assert_token_refused(make_jwt(claims, secret="another-secret-of-at-least-32-bytes-long!!"),
                                  "another secret")
        self.assert_token_refused(make_jwt(claims, secret=TEST_JWT_SECRET[:-1]), "a prefix of the secret")
        self.assert_token_refused(make_jwt(claims, secret=""), "empty secret")

    def test_time_claims(self):
        _, claims = self.good_claims()
        now = int(time.time())
        self.assert_token_refused(make_jwt(dict(claims, nbf=now + 3600)), "nbf an hour ahead")
        self.assert_token_refused(make_jwt(dict(claims, nbf=now + 120, iat=now + 120, exp=now + 1000)),
                                  "nbf two minutes ahead")
        self.assert_token_refused(make_jwt(dict(claims, exp=now - 5)), "exp 5 s ago (no leeway for exp)")
        self.assert_token_refused(make_jwt(dict(claims, iat=now - 4000, nbf=now - 4000, exp=now - 3100)),
                                  "expired an hour ago")

    def test_missing_or_wrong_claims(self):
        u, claims = self.good_claims()
        for drop in ("exp", "sub", "sid"):
            with self.subTest(drop=drop):
                c = dict(claims)
                del c[drop]
                self.assert_token_refused(make_jwt(c), "without %s" % drop)
        self.assert_token_refused(make_jwt(dict(claims, sub="999999999")), "a user that does not exist")
        self.assert_token_refused(make_jwt(dict(claims, sid="not-a-session")), "a session that does not exist")
        self.assert_token_refused(make_jwt(dict(claims, exp=str(claims["exp"]))), "exp a string")

    def test_bad_token_refused_on_public_routes(self):
        _, claims = self.good_claims()
        bad = make_jwt(claims, secret="another-secret-of-at-least-32-bytes-long!!")
        pid = self.request("POST", "/api/properties", harness.valid_property(), token=self.admin()).json["id"]
        for path in ("/api/properties?limit=1", "/api/properties/%d" % pid, "/openapi.json"):
            with self.subTest(path=path):
                r = self.request("GET", path, token=bad)
                self.assert_401(r)
                self.assertEqual(self.request("GET", path, token=None).status, 200)

    def test_bad_token_refused_on_health_routes(self):
        # the contract lists health among the public routes where a bad token is 401 too
        _, claims = self.good_claims()
        bad = make_jwt(claims, secret="another-secret-of-at-least-32-bytes-long!!")
        for path in ("/api/health", "/health/live", "/health/ready"):
            with self.subTest(path=path):
                self.assertEqual(self.request("GET", path, token=bad).status, 401)

    # --- refresh -----------------------------------------------------------------------------------

    def test_refresh_rotation(self):
        u = self.server.user("buyer")
        r1 = u["refresh_token"]
        r = self.refresh(r1)
        t2 = self.assert_tokens(r)
        self.assertNotEqual(t2["refresh_token"], r1)
        self.assertNotEqual(t2["access_token"], u["access_token"])
        me = self.me(t2["access_token"])
        self.assertEqual(me.status, 200, repr(me))
        self.assertEqual(me.json["id"], u["id"])
        # the newest refresh token rotates again
        t3 = self.assert_tokens(self.refresh(t2["refresh_token"]))
        self.assertEqual(self.me(t3["access_token"]).status, 200)

    def test_refresh_reuse_revokes_the_session(self):
        u = self.server.user("buyer")
        other = self.assert_tokens(self.login(u["email"], u["password"]))  # another session of the same user
        a1, r1 = u["access_token"], u["refresh_token"]
        t2 = self.assert_tokens(self.refresh(r1))
        a2, r2 = t2["access_token"], t2["refresh_token"]
        self.assertEqual(self.me(a2).status, 200)
        rid = "reuse-%s" % os.urandom(6).hex()
        r = self.refresh(r1, headers={"X-Request-ID": rid})  # r1 is used: the reuse of a stolen token
        self.assert_error(r, 401, "unauthorized")
        self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), repr(r))
        # the whole family is gone: the newest access token, the first one, and the newest refresh token
        self.assertEqual(self.me(a2).status, 401, "access token of the reused family still works")
        self.assertEqual(self.me(a1).status, 401, "first access token of the reused family still works")
        self.assertEqual(self.request("GET", "/api/properties?limit=1", token=a2).status, 401)
        self.assert_error(self.refresh(r2), 401, "unauthorized")
        self.assert_error(self.refresh(r1), 401, "unauthorized")
        # the user's other session is untouched, and logging in again works
        self.assertEqual(self.me(other["access_token"]).status, 200)
        self.assert_tokens(self.refresh(other["refresh_token"]))
        self.assert_tokens(self.login(u["email"], u["password"]))
        self.assertEqual(len(self.audit_by_request_id("auth.refresh_reused", rid)), 1,
                         "no auth.refresh_reused audit entry for request %s" % rid)

    def test_concurrent_refreshes_with_one_token(self):
        # the same refresh token presented several times at once: at most one rotation succeeds
        u = self.server.user("buyer")
        results = [None] * 6
        barrier = threading.Barrier(len(results))

        def go(i):
            barrier.wait()
            results[i] = self.refresh(u["refresh_token"])

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertLessEqual(statuses.count(200), 1, "one refresh token rotated more than once: %r" % statuses)
        self.assertEqual(set(statuses) - {200}, {401}, repr(statuses))
        # the others were reuses: the session is gone, the winner's tokens with it
        for r in results:
            if r.status == 200:
                self.assertEqual(self.me(r.json["access_token"]).status, 401)
                self.assert_error(self.refresh(r.json["refresh_token"]), 401, "unauthorized")

    def test_refresh_unknown_tokens(self):
        for tok in (b64u(os.urandom(32)), "x", "A" * 43, "not base64 at all!"):
            with self.subTest(tok=tok):
                r = self.refresh(tok)
                self.assert_error(r, 401, "unauthorized")
        # an access token is not a refresh token
        u = self.server.user("buyer")
        self.assert_error(self.refresh(u["access_token"]), 401, "unauthorized")

    def test_refresh_body_problems(self):
        r = self.request("POST", "/api/auth/refresh", {}, token=None)
        self.assert_error(r, 422, "validation_failed", "refresh_token")
        r = self.request("POST", "/api/auth/refresh", {"refresh_token": 12}, token=None)
        self.assert_error(r, 422, "validation_failed", "refresh_token")
        r = self.request("POST", "/api/auth/refresh", b"{", {"Content-Type": "application/json"}, token=None)
        self.assert_error(r, 400, "bad_request")
        r = self.request("POST", "/api/auth/refresh", b'{"refresh_token":"x"}', {"Content-Type": "text/plain"},
                         token=None)
        self.assert_error(r, 415, "unsupported_media_type")

    def test_refresh_follows_role_changes(self):
        u = self.server.user("buyer")
        r = self.request("PATCH", "/api/users/%d" % u["id"], {"role": "agent"}, token=self.admin())
        self.assertEqual(r.status, 200, repr(r))
        t = self.assert_tokens(self.refresh(u["refresh_token"]))
        self.assertEqual(jwt_parts(t["access_token"])[1]["role"], "agent")

    # --- logout ------------------------------------------------------------------------------------

    def test_logout_revokes_the_session(self):
        u = self.server.user("buyer")
        other = self.assert_tokens(self.login(u["email"], u["password"]))
        a, rt = u["access_token"], u["refresh_token"]
        self.assertEqual(self.me(a).status, 200)
        r = self.logout(rt)
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(r.raw, b"")
        self.assert_error(self.refresh(rt), 401, "unauthorized")
        self.assert_401(self.me(a))
        self.assert_401(self.request("GET", "/api/properties?limit=1", token=a))
        r = self.request("POST", "/api/properties", harness.valid_property(), token=a)
        self.assert_401(r)
        # logging out again, or with an unknown token, is fine too
        self.assertEqual(self.logout(rt).status, 204)
        self.assertEqual(self.logout(b64u(os.urandom(32))).status, 204)
        self.assertEqual(self.logout("garbage").status, 204)
        # the other session lives on
        self.assertEqual(self.me(other["access_token"]).status, 200)
        self.assert_tokens(self.refresh(other["refresh_token"]))

    def test_revoked_tokens_refused_on_every_route(self):
        # "its access tokens 401 everywhere"; a token, when sent, must be valid on the public
        # routes too: a logged-out session's token and a disabled user's token alike
        pid = self.request("POST", "/api/properties", harness.valid_property(), token=self.admin()).json["id"]
        out = self.server.user("buyer")
        self.assertEqual(self.logout(out["refresh_token"]).status, 204)
        gone = self.server.user("buyer")
        r = self.request("PATCH", "/api/users/%d" % gone["id"], {"status": "disabled"}, token=self.admin())
        self.assertEqual(r.status, 200, repr(r))
        paths = ("/api/properties?limit=1", "/api/properties/%d" % pid, "/openapi.json", "/api/health",
                 "/health/live", "/health/ready", "/metrics", "/api/me")
        for path in paths[:3]:  # warm the response cache: a cached answer must not let the token by
            self.request("GET", path, token=None)
            self.request("GET", path, token=None)
        for who, tok in (("logged out", out["access_token"]), ("disabled", gone["access_token"])):
            for path in paths:
                with self.subTest(who=who, path=path):
                    r = self.request("GET", path, token=tok)
                    self.assertEqual(r.status, 401, "%s token, GET %s -> %r" % (who, path, r))
                    self.assertIn('error="invalid_token"', r.headers.get("www-authenticate", ""))

    def test_logout_after_refresh_revokes_the_family(self):
        u = self.server.user("buyer")
        t2 = self.assert_tokens(self.refresh(u["refresh_token"]))
        # logging out with the newest refresh token ends the access tokens issued before it too
        self.assertEqual(self.logout(t2["refresh_token"], token=t2["access_token"]).status, 204)
        self.assertEqual(self.me(t2["access_token"]).status, 401)
        self.assertEqual(self.me(u["access_token"]).status, 401)
        self.assert_error(self.refresh(t2["refresh_token"]), 401, "unauthorized")

    def test_logout_with_an_old_refresh_token(self):
        # logout with a used (rotated) refresh token of the family: the family is revoked either way
        u = self.server.user("buyer")
        t2 = self.assert_tokens(self.refresh(u["refresh_token"]))
        self.assertEqual(self.logout(u["refresh_token"]).status, 204)
        self.assertEqual(self.me(t2["access_token"]).status, 401)
        self.assert_error(self.refresh(t2["refresh_token"]), 401, "unauthorized")

    # --- audit -------------------------------------------------------------------------------------

    def assert_audit_entry(self, e):
        self.assertEqual(set(e.keys()), AUDIT_KEYS, repr(e))
        self.assertIsInstance(e["id"], (int, str))
        self.assertRegex(e["at"], RFC3339_RE)
        self.assertTrue(e["actor_id"] is None or isinstance(e["actor_id"], int), repr(e))
        self.assertTrue(e["resource_id"] is None or isinstance(e["resource_id"], str), repr(e))
        self.assertTrue(e["detail"] is None or isinstance(e["detail"], dict), repr(e))

    def test_login_attempts_audited(self):
        email = self.new_email("audit")
        password = "audit-secret-password-%s" % os.urandom(4).hex()
        uid = self.register(email, password=password).json["id"]
        tag = os.urandom(6).hex()
        ok, bad, unknown = "login-ok-" + tag, "login-bad-" + tag, "login-unknown-" + tag
        wrong_pw = "wrong-secret-password-%s" % tag
        self.assertEqual(self.login(email, password, headers={"X-Request-ID": ok}).status, 200)
        self.assertEqual(self.login(email, wrong_pw, headers={"X-Request-ID": bad}).status, 401)
        self.assertEqual(self.login(self.new_email("ghost"), wrong_pw, headers={"X-Request-ID": unknown}).status, 401)

        items = self.audit("action=auth.login_failed&limit=100")
        for e in items:
            self.assert_audit_entry(e)
            self.assertEqual(e["action"], "auth.login_failed")
        ats = [e["at"] for e in items]
        self.assertEqual(ats, sorted(ats, reverse=True), "audit entries are not newest first")
        mine = {e["request_id"]: e for e in items if e["request_id"] in (bad, unknown)}
        self.assertEqual(set(mine), {bad, unknown}, "failed logins missing from the audit log")
        for e in mine.values():
            self.assertEqual(e["ip"], "127.0.0.1")
        self.assertTrue(mine[bad]["actor_id"] in (None, uid), repr(mine[bad]))
        self.assertIsNone(mine[unknown]["actor_id"], repr(mine[unknown]))

        good = [e for e in self.audit("action=auth.login&actor_id=%d" % uid) if e["request_id"] == ok]
        self.assertEqual(len(good), 1, "successful login missing from the audit log")
        self.assert_audit_entry(good[0])
        self.assertEqual(good[0]["actor_id"], uid)
        self.assertEqual(good[0]["action"], "auth.login")
        self.assertEqual(good[0]["ip"], "127.0.0.1")
        # the failed entries are not under auth.login
        self.assertFalse([e for e in self.audit("action=auth.login&limit=100") if e["request_id"] in (bad, unknown)])
        # no password ever reaches the audit log
        for q in ("limit=100", "action=auth.login_failed&limit=100", "action=user.register&limit=100"):
            raw = self.request("GET", "/api/audit?" + q, token=self.admin()).raw.decode()
            self.assertNotIn(password, raw)
            self.assertNotIn(wrong_pw, raw)

    def test_session_lifecycle_audited(self):
        tag = os.urandom(6).hex()
        email = self.new_email("life")
        r = self.request("POST", "/api/auth/register", {"email": email, "password": "life-password-1", "full_name": "L"},
                         headers={"X-Request-ID": "reg-" + tag}, token=None)
        self.assertEqual(r.status, 201, repr(r))
        t = self.assert_tokens(self.login(email, "life-password-1"))
        t2 = self.assert_tokens(self.refresh(t["refresh_token"], headers={"X-Request-ID": "ref-" + tag}))
        self.assertEqual(self.logout(t2["refresh_token"], headers={"X-Request-ID": "out-" + tag}).status, 204)
        for action, rid in (("user.register", "reg-"), ("auth.refresh", "ref-"), ("auth.logout", "out-")):
            with self.subTest(action=action):
                self.assertEqual(len(self.audit_by_request_id(action, rid + tag)), 1,
                                 "no %s audit entry for request %s" % (action, rid + tag))

    # --- hearth user create --------------------------------------------------------------------------

    def cli(self, args, stdin_text=None):
        if stdin_text is None:
            return run_cli(["user", "create"] + args, self.server.data_dir, self.server.extra_env)
        with tempfile.TemporaryFile("w+") as f:
            f.write(stdin_text)
            f.seek(0)
            return run_cli(["user", "create"] + args, self.server.data_dir, self.server.extra_env, stdin=f)

    def test_cli_user_create(self):
        email = self.new_email("cli-agent")
        r = self.cli(["--email", email, "--role", "agent", "--full-name", "Cli Agent", "--password", "cli-password-1"])
        self.assertEqual(r.returncode, 0, repr(r))
        m = re.match(r"^created user (\d+) \((\S+), (\w+)\)\n?$", r.stdout)
        self.assertTrue(m, "unexpected output %r" % r.stdout)
        uid = int(m.group(1))
        self.assertEqual(m.group(2), email)
        self.assertEqual(m.group(3), "agent")
        t = self.assert_tokens(self.login(email, "cli-password-1"))
        me = self.me(t["access_token"]).json
        self.assertEqual((me["id"], me["role"], me["status"], me["full_name"]), (uid, "agent", "active", "Cli Agent"))
        entries = [e for e in self.audit("action=user.create&limit=100") if e["resource_id"] == str(uid)]
        self.assertEqual(len(entries), 1, "no user.create audit entry for user %d" % uid)

    def test_cli_password_on_stdin(self):
        email = self.new_email("cli-stdin")
        r = self.cli(["--email", email, "--role", "buyer"], stdin_text="stdin-password-1\n")
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertRegex(r.stdout, r"^created user \d+ \(%s, buyer\)" % re.escape(email))
        self.assertNotIn("stdin-password-1", r.stdout + r.stderr)
        self.assert_tokens(self.login(email, "stdin-password-1"))

    def test_cli_admin_can_administer(self):
        email = self.new_email("cli-admin")
        r = self.cli(["--email", email, "--role", "admin", "--password", "cli-password-1"])
        self.assertEqual(r.returncode, 0, repr(r))
        t = self.assert_tokens(self.login(email, "cli-password-1"))
        self.assertEqual(self.request("GET", "/api/users", token=t["access_token"]).status, 200)

    def test_cli_existing_email(self):
        email = self.new_email("cli-dup")
        self.assertEqual(self.cli(["--email", email, "--role", "buyer", "--password", "cli-password-1"]).returncode, 0)
        for again in (email, email.upper()):
            with self.subTest(email=again):
                r = self.cli(["--email", again, "--role", "agent", "--password", "cli-password-2"])
                self.assertEqual(r.returncode, 1, repr(r))
                self.assertIn("email is already registered", r.stderr)
        # a registration through the API with it is a conflict as well
        r = self.request("POST", "/api/auth/register", {"email": email, "password": "x-password-1", "full_name": "X"},
                         token=None)
        self.assert_error(r, 409, "conflict")

    def test_cli_bad_arguments(self):
        e = self.new_email("cli-bad")
        cases = [
            ("role", ["--email", e, "--role", "superuser", "--password", "cli-password-1"]),
            ("role", ["--email", e, "--password", "cli-password-1"]),
            ("email", ["--role", "buyer", "--password", "cli-password-1"]),
            ("email", ["--email", "not-an-email", "--role", "buyer", "--password", "cli-password-1"]),
            ("password", ["--email", e, "--role", "buyer", "--password", "short"]),
            ("bogus", ["--email", e, "--role", "buyer", "--password", "cli-password-1", "--bogus"]),
        ]
        for name, args in cases:
            with self.subTest(args=args):
                r = self.cli(args)
                self.assertEqual(r.returncode, 2, repr(r))
                self.assertIn(name, r.stderr.lower(), "the message does not name %s: %r" % (name, r.stderr))
        # none of them created the user
        self.assertEqual(self.login(e, "cli-password-1").status, 401)


class RegisterNullTest(AuthBase):
    """null for a required field is a validation failure (in a class of its own: a server that
    falls over on one does not take the other tests down with it)."""

    def test_register_null_fields(self):
        for field in ("email", "full_name", "password"):
            with self.subTest(field=field):
                body = {"email": self.new_email("null"), "password": "good-password", "full_name": "Null"}
                body[field] = None
                r = self.request("POST", "/api/auth/register", body, token=None)
                self.assert_error(r, 422, "validation_failed", field)
        r = self.request("POST", "/api/auth/register", {"email": None, "password": None, "full_name": None}, token=None)
        err = self.assert_error(r, 422, "validation_failed")
        self.assertEqual({d["field"] for d in err["details"]}, {"email", "password", "full_name"})


class TokenExpiryTest(AuthBase):
    TTL = 10
    ENV = dict(AuthBase.ENV, HEARTH_ACCESS_TOKEN_TTL=str(TTL))

    def test_access_token_expires(self):
        u = self.server.user("buyer")
        self.assertEqual(u["expires_in"], self.TTL)
        claims = jwt_parts(u["access_token"])[1]
        self.assertEqual(claims["exp"] - claims["iat"], self.TTL)
        self.assertEqual(self.me(u["access_token"]).status, 200)
        # sleep past exp (no leeway for exp)
        wait = claims["exp"] + 1.2 - time.time()
        if wait > 0:
            time.sleep(wait)
        self.assert_401(self.me(u["access_token"]))
        self.assert_401(self.request("GET", "/api/properties?limit=1", token=u["access_token"]))
        # the refresh token outlives it and gives a fresh access token
        t = self.assert_tokens(self.refresh(u["refresh_token"]), ttl=self.TTL)
        self.assertEqual(self.me(t["access_token"]).status, 200)


class LoginLimitTest(AuthBase):
    ENV = {"HEARTH_LOGIN_LIMITS": "account=3/min:3,address=100/min:100"}

    def assert_limited(self, r):
        self.assert_error(r, 429, "rate_limited")
        ra = r.headers.get("retry-after", "")
        self.assertRegex(ra, r"^\d+$", repr(r))
        self.assertGreaterEqual(int(ra), 1)
        self.assertLessEqual(int(ra), 60)

    def test_account_budget(self):
        email = self.new_email("brute")
        self.register(email, password="right-password-1")
        for i in range(3):
            self.assertEqual(self.login(email, "guess-%d-password" % i).status, 401)
        # the fourth attempt is refused before the password is looked at, even the right one
        self.assert_limited(self.login(email, "right-password-1"))
        self.assert_limited(self.login(email, "guess-x-password"))
        # another account from the same address is not affected
        other = self.new_email("bystander")
        self.register(other, password="right-password-1")
        self.assertEqual(self.login(other, "right-password-1").status, 200)

    def test_unknown_email_limited_alike(self):
        ghost = self.new_email("ghost")
        for _ in range(3):
            r = self.login(ghost, "guess-password-1")
            self.assert_error(r, 401, "unauthorized")
        self.assert_limited(self.login(ghost, "guess-password-1"))

    def test_email_case_shares_the_budget(self):
        email = self.new_email("casebrute")
        self.register(email, password="right-password-1")
        for variant in (email, email.upper(), email[0].upper() + email[1:]):
            self.assertEqual(self.login(variant, "guess-password-1").status, 401)
        self.assert_limited(self.login(email, "right-password-1"))


class LoginAddressLimitTest(AuthBase):
    ENV = {"HEARTH_LOGIN_LIMITS": "account=100/min:100,address=3/min:3"}

    def test_address_budget(self):
        emails = [self.new_email("addr") for _ in range(4)]
        for e in emails:  # made from the command line: registering takes from the address budget too
            r = harness.run_cli(["user", "create", "--email", e, "--role", "buyer", "--password", "right-password-1"],
                                self.server.data_dir, self.server.extra_env)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.login(emails[0], "right-password-1").status, 200)
        self.assertEqual(self.login(emails[1], "wrong-password-1").status, 401)
        self.assertEqual(self.login(self.new_email("nobody"), "wrong-password-1").status, 401)
        r = self.login(emails[3], "right-password-1")
        self.assert_error(r, 429, "rate_limited")
        self.assertRegex(r.headers.get("retry-after", ""), r"^\d+$", repr(r))
        # a registration costs a password hash as a login does: the same address budget refuses it
        r = self.request("POST", "/api/auth/register", token=None,
                         body={"email": self.new_email("late"), "password": "right-password-1", "full_name": "Late"})
        self.assert_error(r, 429, "rate_limited")


class SecretConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-auth-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config_error(self, var, value):
        env = {"HEARTH_LISTEN": "127.0.0.1:%d" % free_port(), var: value}
        try:
            p = subprocess.run([BIN, "serve"], env=base_env(self.dir, env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=6, text=True,
                               errors="replace")
        except subprocess.TimeoutExpired:
            self.fail("%s=%r: the server started instead of refusing the value" % (var, value))
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 2, "%s=%r: exit %d, output %r" % (var, value, p.returncode, out))
        self.assertIn(var, out)

    def test_short_secret_refused(self):
        for v in ("x" * 31, "short"):  # (empty counts as unset: a secret is generated)
            with self.subTest(value=v):
                self.config_error("HEARTH_JWT_SECRET", v)

    def test_bad_settings_refused(self):
        cases = [("HEARTH_ACCESS_TOKEN_TTL", v) for v in ("9", "86401", "abc", "0", "-5")] + \
                [("HEARTH_REFRESH_TOKEN_TTL", v) for v in ("59", "31536001", "x")] + \
                [("HEARTH_ARGON2_OPS", v) for v in ("0", "11")] + \
                [("HEARTH_ARGON2_MEM_KB", v) for v in ("63", "1048577")] + \
                [("HEARTH_LOGIN_LIMITS", v) for v in ("bogus=1/min", "account=0/min", "account")]
        for var, v in cases:
            with self.subTest(var=var, value=v):
                self.config_error(var, v)

    def test_generated_secret_is_kept(self):
        env = {"HEARTH_JWT_SECRET": None, "HEARTH_LOGIN_LIMITS": GENEROUS_LOGIN_LIMITS}
        srv = Server(env=env, data_dir=self.dir)
        try:
            srv.start()
            path = os.path.join(self.dir, "jwt-secret")
            self.assertTrue(os.path.isfile(path), "no %s" % path)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            with open(path, "rb") as f:
                secret = f.read()
            self.assertGreaterEqual(len(secret.strip()), 32)
            u = srv.user("buyer")
            self.assertEqual(srv.request("GET", "/api/me", token=u["access_token"]).status, 200)
            # the test secret is not the one in use
            claims = jwt_parts(u["access_token"])[1]
            self.assertEqual(srv.request("GET", "/api/me", token=make_jwt(claims)).status, 401)
            self.assertEqual(srv.stop(), 0)
            srv.log.close()
            # a restart reuses the file: the token stays valid
            srv = Server(env=env, data_dir=self.dir)
            srv.start()
            r = srv.request("GET", "/api/me", token=u["access_token"])
            self.assertEqual(r.status, 200, repr(r))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), secret)
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.kill()
            try:
                srv.log.close()
            except Exception:
                pass


if __name__ == "__main__":
    harness.main()
