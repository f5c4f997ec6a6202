"""Roles (issue 4): every route against no token, a buyer, an agent and an admin; listings belong to
the agent who made them; the user administration routes and the audit log are the admin's; a
role change or a disabled account takes effect on the user's next request whatever the token
says; an admin cannot change their own role or status; property mutations are audited with the
actor, the resource and the request id."""
import base64
import hashlib
import hmac
import json
import os
import re

import harness
from harness import ServerTestCase, valid_property, TEST_JWT_SECRET

GENEROUS_LOGIN_LIMITS = "account=1000/min:1000,address=10000/min:10000"
USER_KEYS = {"id", "email", "full_name", "role", "status", "created_at", "updated_at"}
AUDIT_KEYS = {"id", "at", "actor_id", "action", "resource_type", "resource_id", "ip", "request_id", "detail"}
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
ROLES = (None, "buyer", "agent", "admin")
REMOTE = "203.0.113.77"  # a client behind the trusted proxy (the test client on 127.0.0.1)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class RolesTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_LOGIN_LIMITS": GENEROUS_LOGIN_LIMITS, "HEARTH_TRUSTED_PROXIES": "127.0.0.1"}

    @classmethod
    def prepare(cls):
        srv = cls.server
        cls.users = {"buyer": srv.user("buyer"), "agent": srv.user("agent"), "admin": srv.user("admin")}
        cls.agent2 = srv.user("agent")
        cls.root_token = srv.admin_token()  # the harness admin: used for set-up and checks
        r = srv.request("GET", "/api/me", token=cls.root_token)
        assert r.status == 200, repr(r)
        cls.root_id = r.json["id"]

    # --- helpers -------------------------------------------------------------------------------

    def tok(self, role):
        return None if role is None else self.users[role]["access_token"]

    def uid(self, role):
        return self.users[role]["id"]

    def as_root(self, method, path, body=None, headers=None):
        return self.request(method, path, body, headers=headers, token=self.root_token)

    def expect(self, r, status, what):
        """status 401/403: the error envelope with the right code (and WWW-Authenticate on 401)."""
        self.assertEqual(r.status, status, "%s: expected %d, got %r" % (what, status, r))
        if status == 401:
            self.assert_error(r, 401, "unauthorized")
            self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), repr(r))
        elif status == 403:
            self.assert_error(r, 403, "forbidden")

    def create_listing(self, token, **over):
        r = self.request("POST", "/api/properties", valid_property(**over), token=token)
        self.assertEqual(r.status, 201, repr(r))
        return r.json

    def imported_listing(self):
        r = self.request("GET", "/api/properties?limit=100", token=None)
        self.assertEqual(r.status, 200, repr(r))
        for p in r.json["items"]:
            if p["source"]:
                return p
        self.fail("no imported listing among the first 100")

    def audit(self, query):
        r = self.as_root("GET", "/api/audit?" + query)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(set(r.json.keys()), {"items", "next_cursor"}, repr(r.json)[:300])
        for e in r.json["items"]:
            self.assertEqual(set(e.keys()), AUDIT_KEYS, repr(e))
        return r.json["items"]

    # --- public routes -------------------------------------------------------------------------

    def test_public_reads_for_everyone(self):
        pid = self.imported_listing()["id"]
        paths = ["/api/properties?limit=2", "/api/properties/%d" % pid, "/health/live", "/health/ready",
                 "/api/health", "/openapi.json", "/metrics"]
        for role in ROLES:
            for path in paths:
                with self.subTest(role=role, path=path):
                    r = self.request("GET", path, token=self.tok(role))
                    self.assertEqual(r.status, 200, "%s GET %s -> %r" % (role, path, r))

    def test_auth_routes_for_everyone(self):
        # register, login, refresh and logout are public: a caller's (valid) token changes nothing
        for role in ROLES:
            with self.subTest(role=role):
                email = "pub-%s@hearth.test" % os.urandom(6).hex()
                r = self.request("POST", "/api/auth/register",
                                 {"email": email, "password": "pub-password-1", "full_name": "Pub"}, token=self.tok(role))
                self.assertEqual(r.status, 201, repr(r))
                self.assertEqual(r.json["role"], "buyer", "a registration by an admin made a non-buyer")
                r = self.request("POST", "/api/auth/login", {"email": email, "password": "pub-password-1"},
                                 token=self.tok(role))
                self.assertEqual(r.status, 200, repr(r))
                me = self.request("GET", "/api/me", token=r.json["access_token"]).json
                self.assertEqual(me["email"], email, "the new tokens are not the new user's")
                r = self.request("POST", "/api/auth/refresh", {"refresh_token": r.json["refresh_token"]},
                                 token=self.tok(role))
                self.assertEqual(r.status, 200, repr(r))
                r = self.request("POST", "/api/auth/logout", {"refresh_token": r.json["refresh_token"]},
                                 token=self.tok(role))
                self.assertEqual(r.status, 204, repr(r))
        # the callers' own sessions are untouched by all that
        for role in ("buyer", "agent", "admin"):
            self.assertEqual(self.request("GET", "/api/me", token=self.tok(role)).status, 200)

    def test_metrics_from_a_remote_client(self):
        # loopback only, unless the caller is an admin: then from anywhere
        hdrs = {"X-Forwarded-For": REMOTE}
        for role, want in ((None, 403), ("buyer", 403), ("agent", 403), ("admin", 200)):
            with self.subTest(role=role):
                r = self.request("GET", "/metrics", headers=hdrs, token=self.tok(role))
                self.assertEqual(r.status, want, "%s GET /metrics from %s -> %r" % (role, REMOTE, r))
        r = self.request("GET", "/metrics", headers=hdrs, token=self.tok("admin")[:-3] + "AAA")
        self.assertEqual(r.status, 401, repr(r))

    def test_me_for_each_role(self):
        self.expect(self.request("GET", "/api/me", token=None), 401, "no token GET /api/me")
        for role in ("buyer", "agent", "admin"):
            with self.subTest(role=role):
                r = self.request("GET", "/api/me", token=self.tok(role))
                self.assertEqual(r.status, 200, repr(r))
                self.assertEqual(set(r.json.keys()), USER_KEYS, repr(r.json))
                self.assertEqual(r.json["id"], self.uid(role))
                self.assertEqual(r.json["email"], self.users[role]["email"])
                self.assertEqual(r.json["role"], role)
                self.assertEqual(r.json["status"], "active")

    # --- listings ------------------------------------------------------------------------------

    def test_create_listing_by_role(self):
        self.expect(self.request("POST", "/api/properties", valid_property(), token=None), 401, "no token POST")
        self.expect(self.request("POST", "/api/properties", valid_property(), token=self.tok("buyer")), 403,
                    "buyer POST")
        for role in ("agent", "admin"):
            with self.subTest(role=role):
                p = self.create_listing(self.tok(role), title="By %s" % role)
                self.assertEqual(p["owner_id"], self.uid(role))
                g = self.request("GET", "/api/properties/%d" % p["id"], token=None)
                self.assertEqual(g.json["owner_id"], self.uid(role))

    def test_refused_create_writes_nothing(self):
        title = "buyer attempt %s" % os.urandom(4).hex()
        r = self.request("POST", "/api/properties", valid_property(title=title), token=self.tok("buyer"))
        self.expect(r, 403, "buyer POST")
        titles = [p["title"] for p in self.fetch_all()]
        self.assertNotIn(title, titles)

    def test_owner_id_cannot_be_chosen(self):
        body = valid_property(owner_id=self.agent2["id"])
        r = self.request("POST", "/api/properties", body, token=self.tok("agent"))
        self.assertIn(r.status, (201, 422), repr(r))
        if r.status == 201:
            self.assertEqual(r.json["owner_id"], self.uid("agent"), "the body chose the owner")
        p = self.create_listing(self.tok("agent"))
        r = self.request("PATCH", "/api/properties/%d" % p["id"], {"owner_id": self.agent2["id"]},
                         token=self.tok("agent"))
        self.assertIn(r.status, (200, 422), repr(r))
        g = self.request("GET", "/api/properties/%d" % p["id"], token=None)
        self.assertEqual(g.json["owner_id"], self.uid("agent"), "PATCH changed the owner")

    def test_update_listing_by_role(self):
        p = self.create_listing(self.tok("agent"), title="Agent's own", price=100000)
        path = "/api/properties/%d" % p["id"]
        for who, token, want in (("no token", None, 401), ("buyer", self.tok("buyer"), 403),
                                 ("another agent", self.agent2["access_token"], 403)):
            with self.subTest(who=who):
                r = self.request("PATCH", path, {"price": 1}, token=token)
                self.expect(r, want, "%s PATCH" % who)
        g = self.request("GET", path, token=None)
        self.assertEqual(g.json["price"], 100000, "a refused PATCH changed the listing")
        self.assertEqual(g.json["version"], 1)
        r = self.request("PATCH", path, {"price": 110000}, token=self.tok("agent"))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["price"], 110000)
        self.assertEqual(r.json["owner_id"], self.uid("agent"))
        r = self.request("PATCH", path, {"price": 120000}, token=self.tok("admin"))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["price"], 120000)
        self.assertEqual(r.json["owner_id"], self.uid("agent"), "an admin's edit changed the owner")
        # the owner can still edit after the admin did
        r = self.request("PATCH", path, {"title": "Back to me"}, token=self.tok("agent"))
        self.assertEqual(r.status, 200, repr(r))

    def test_delete_listing_by_role(self):
        p = self.create_listing(self.tok("agent"))
        path = "/api/properties/%d" % p["id"]
        for who, token, want in (("no token", None, 401), ("buyer", self.tok("buyer"), 403),
                                 ("another agent", self.agent2["access_token"], 403)):
            with self.subTest(who=who):
                self.expect(self.request("DELETE", path, token=token), want, "%s DELETE" % who)
        self.assertEqual(self.request("GET", path, token=None).status, 200, "a refused DELETE deleted")
        r = self.request("DELETE", path, token=self.tok("agent"))
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(self.request("GET", path, token=None).status, 404)
        # an admin deletes anyone's
        q = self.create_listing(self.agent2["access_token"])
        r = self.request("DELETE", "/api/properties/%d" % q["id"], token=self.tok("admin"))
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(self.request("GET", "/api/properties/%d" % q["id"], token=None).status, 404)

    def test_admin_listing_is_not_an_agents(self):
        p = self.create_listing(self.tok("admin"))
        path = "/api/properties/%d" % p["id"]
        self.expect(self.request("PATCH", path, {"price": 5}, token=self.tok("agent")), 403, "agent PATCH admin's")
        self.expect(self.request("DELETE", path, token=self.tok("agent")), 403, "agent DELETE admin's")
        self.assertEqual(self.request("PATCH", path, {"price": 5000}, token=self.root_token).status, 200)

    def test_imported_listings_belong_to_the_system_account(self):
        p = self.imported_listing()
        r = self.as_root("GET", "/api/users/%d" % p["owner_id"])
        self.assertEqual(r.status, 200, repr(r))
        system = [r.json]
        self.assertEqual((r.json["email"], r.json["role"], r.json["status"]),
                         ("system@hearth.local", "agent", "disabled"))
        path = "/api/properties/%d" % p["id"]
        self.expect(self.request("PATCH", path, {"price": 5}, token=self.tok("agent")), 403, "agent PATCH imported")
        self.expect(self.request("DELETE", path, token=self.tok("agent")), 403, "agent DELETE imported")
        self.expect(self.request("PATCH", path, {"price": 5}, token=self.tok("buyer")), 403, "buyer PATCH imported")
        r = self.request("PATCH", path, {"description": "edited by an admin"}, token=self.tok("admin"))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["owner_id"], system[0]["id"])

    # --- user administration -------------------------------------------------------------------

    def test_admin_routes_by_role(self):
        target = self.users["buyer"]["id"]
        routes = [("GET", "/api/users", None), ("GET", "/api/users/%d" % target, None),
                  ("GET", "/api/audit", None), ("GET", "/api/users?role=agent", None),
                  ("GET", "/api/audit?action=auth.login", None),
                  ("PATCH", "/api/users/%d" % target, {"full_name": "Renamed Buyer"})]
        for method, path, body in routes:
            for role, want in ((None, 401), ("buyer", 403), ("agent", 403), ("admin", 200)):
                with self.subTest(method=method, path=path, role=role):
                    r = self.request(method, path, body, token=self.tok(role))
                    self.expect(r, want, "%s %s %s" % (role, method, path))

    def test_users_cannot_promote_themselves(self):
        for role in ("buyer", "agent"):
            with self.subTest(role=role):
                u = self.server.user(role)
                for body in ({"role": "admin"}, {"status": "active"}, {"full_name": "Self"}):
                    r = self.request("PATCH", "/api/users/%d" % u["id"], body, token=u["access_token"])
                    self.expect(r, 403, "%s PATCH self %r" % (role, body))
                self.expect(self.request("GET", "/api/users/%d" % u["id"], token=u["access_token"]), 403,
                            "%s GET own /api/users/{id}" % role)
                me = self.request("GET", "/api/me", token=u["access_token"]).json
                self.assertEqual(me["role"], role)
                self.expect(self.request("GET", "/api/users", token=u["access_token"]), 403, "still not an admin")

    def test_users_list(self):
        r = self.as_root("GET", "/api/users")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(set(r.json.keys()), {"items", "next_cursor"})
        self.assertLessEqual(len(r.json["items"]), 20)
        for u in r.json["items"]:
            self.assertEqual(set(u.keys()), USER_KEYS, repr(u))
            self.assertRegex(u["created_at"], RFC3339_RE)
        raw = r.raw.decode().lower()
        self.assertNotIn("password", raw)
        self.assertNotIn("argon2", raw)
        # paging by id ascending, no repeats, everyone there
        ids, cursor, pages = [], None, 0
        while True:
            path = "/api/users?limit=2" + ("&cursor=" + harness.urlquote(cursor) if cursor else "")
            r = self.as_root("GET", path)
            self.assertEqual(r.status, 200, repr(r))
            self.assertLessEqual(len(r.json["items"]), 2)
            ids += [u["id"] for u in r.json["items"]]
            cursor = r.json["next_cursor"]
            pages += 1
            self.assertLess(pages, 500)
            if cursor is None:
                break
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)))
        for role in ("buyer", "agent", "admin"):
            self.assertIn(self.uid(role), ids)
        self.assertIn(self.root_id, ids)
        # filters
        for q, key, value in (("role=agent", "role", "agent"), ("role=admin", "role", "admin"),
                              ("status=disabled", "status", "disabled"), ("role=buyer&status=active", "role", "buyer")):
            with self.subTest(q=q):
                r = self.as_root("GET", "/api/users?limit=100&" + q)
                self.assertEqual(r.status, 200, repr(r))
                self.assertTrue(r.json["items"], "no users for %s" % q)
                for u in r.json["items"]:
                    self.assertEqual(u[key], value, repr(u))
        agents = [u["id"] for u in self.as_root("GET", "/api/users?role=agent&limit=100").json["items"]]
        self.assertIn(self.uid("agent"), agents)
        self.assertNotIn(self.uid("buyer"), agents)

    def test_users_list_includes_the_system_account(self):
        # nothing in the contract leaves it out of the list (and api.md's example shows it)
        owner = self.imported_listing()["owner_id"]
        r = self.as_root("GET", "/api/users?role=agent&status=disabled&limit=100")
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn(owner, [u["id"] for u in r.json["items"]], "system account missing: %r" % r.json)

    def test_users_list_bad_parameters(self):
        for q in ("limit=0", "limit=101", "role=superuser", "status=gone"):
            with self.subTest(q=q):
                r = self.as_root("GET", "/api/users?" + q)
                self.assertIn(r.status, (400, 422), repr(r))
                self.assert_error(r, r.status, {400: "bad_request", 422: "validation_failed"}[r.status])

    def test_get_user(self):
        r = self.as_root("GET", "/api/users/%d" % self.uid("agent"))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(set(r.json.keys()), USER_KEYS)
        self.assertEqual(r.json["email"], self.users["agent"]["email"])
        self.assertEqual(r.json["role"], "agent")
        self.assert_error(self.as_root("GET", "/api/users/999999999"), 404, "not_found")
        self.assert_error(self.as_root("PATCH", "/api/users/999999999", {"full_name": "Nobody"}), 404, "not_found")

    def test_patch_user_validation(self):
        u = self.server.user("buyer")
        path = "/api/users/%d" % u["id"]
        for field, body in (("role", {"role": "superuser"}), ("role", {"role": "Admin"}), ("role", {"role": 1}),
                            ("status", {"status": "gone"}), ("status", {"status": None}),
                            ("full_name", {"full_name": ""}), ("full_name", {"full_name": "x" * 201}),
                            ("full_name", {"full_name": "a\x01b"})):
            with self.subTest(body=repr(body)[:50]):
                self.assert_error(self.as_root("PATCH", path, body), 422, "validation_failed", field)
        self.assertEqual(self.as_root("GET", path).json["role"], "buyer")
        # fields outside role/status/full_name are ignored: the email and password stay
        r = self.as_root("PATCH", path, {"full_name": "Renamed", "email": "taken-over@hearth.test",
                                         "password": "new-password-99", "id": 1})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["full_name"], "Renamed")
        self.assertEqual(r.json["email"], u["email"])
        self.assertEqual(r.json["id"], u["id"])
        self.assertEqual(self.server.login(u["email"], u["password"])["token_type"], "bearer")
        r = self.request("POST", "/api/auth/login", {"email": u["email"], "password": "new-password-99"}, token=None)
        self.assertEqual(r.status, 401, repr(r))

    # --- the role in the token is not trusted --------------------------------------------------

    def test_role_change_applies_to_the_old_token(self):
        u = self.server.user("buyer")
        tok = u["access_token"]
        self.expect(self.request("POST", "/api/properties", valid_property(), token=tok), 403, "buyer POST")
        r = self.as_root("PATCH", "/api/users/%d" % u["id"], {"role": "agent"})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["role"], "agent")
        # the same token (which still says buyer)
        self.assertEqual(self.request("GET", "/api/me", token=tok).json["role"], "agent")
        p = self.create_listing(tok)
        self.assertEqual(p["owner_id"], u["id"])
        # promoted to admin: the admin routes open, with the same token
        self.assertEqual(self.as_root("PATCH", "/api/users/%d" % u["id"], {"role": "admin"}).status, 200)
        self.assertEqual(self.request("GET", "/api/users", token=tok).status, 200)
        # demoted to buyer: its own listing is no longer its to edit, nor may it create one
        self.assertEqual(self.as_root("PATCH", "/api/users/%d" % u["id"], {"role": "buyer"}).status, 200)
        self.expect(self.request("GET", "/api/users", token=tok), 403, "demoted GET /api/users")
        self.expect(self.request("POST", "/api/properties", valid_property(), token=tok), 403, "demoted POST")
        self.expect(self.request("PATCH", "/api/properties/%d" % p["id"], {"price": 7}, token=tok), 403,
                    "demoted PATCH own listing")
        self.expect(self.request("DELETE", "/api/properties/%d" % p["id"], token=tok), 403,
                    "demoted DELETE own listing")

    def test_signed_role_claim_is_not_trusted(self):
        # a token with role=admin, correctly signed (as if the secret had leaked or a bug minted it)
        # for a buyer's real session: the role comes from the database, not the token
        u = self.server.user("buyer")
        h, p, _ = u["access_token"].split(".")
        claims = json.loads(b64u_decode(p))
        claims["role"] = "admin"
        p2 = b64u(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(TEST_JWT_SECRET.encode(), ("%s.%s" % (h, p2)).encode(), hashlib.sha256).digest()
        forged = "%s.%s.%s" % (h, p2, b64u(sig))
        r = self.request("GET", "/api/users", token=forged)
        self.assertIn(r.status, (401, 403), "a role=admin claim opened /api/users: %r" % (r,))
        r = self.request("POST", "/api/properties", valid_property(), token=forged)
        self.assertIn(r.status, (401, 403), "a role=admin claim let a buyer create a listing: %r" % (r,))
        r = self.request("GET", "/api/me", token=forged)
        if r.status == 200:
            self.assertEqual(r.json["role"], "buyer")

    def test_disabling_a_user_ends_their_tokens(self):
        u = self.server.user("agent")
        tok = u["access_token"]
        p = self.create_listing(tok)
        r = self.as_root("PATCH", "/api/users/%d" % u["id"], {"status": "disabled"})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["status"], "disabled")
        self.expect(self.request("GET", "/api/me", token=tok), 401, "disabled GET /api/me")
        self.expect(self.request("GET", "/api/properties?limit=1", token=tok), 401, "disabled GET /api/properties")
        self.expect(self.request("POST", "/api/properties", valid_property(), token=tok), 401, "disabled POST")
        self.expect(self.request("PATCH", "/api/properties/%d" % p["id"], {"price": 9}, token=tok), 401,
                    "disabled PATCH own listing")
        r = self.request("POST", "/api/auth/refresh", {"refresh_token": u["refresh_token"]}, token=None)
        self.expect(r, 401, "disabled refresh")
        r = self.request("POST", "/api/auth/login", {"email": u["email"], "password": u["password"]}, token=None)
        self.expect(r, 401, "disabled login")
        self.assertEqual(r.json["error"]["message"], "invalid email or password")
        # enabled again: logging in works, the sessions ended by disabling stay ended
        r = self.as_root("PATCH", "/api/users/%d" % u["id"], {"status": "active"})
        self.assertEqual(r.status, 200, repr(r))
        self.expect(self.request("GET", "/api/me", token=tok), 401, "re-enabled, old access token")
        r = self.request("POST", "/api/auth/refresh", {"refresh_token": u["refresh_token"]}, token=None)
        self.expect(r, 401, "re-enabled, old refresh token")
        t = self.server.login(u["email"], u["password"])
        self.assertEqual(self.request("GET", "/api/me", token=t["access_token"]).status, 200)
        # the listing stayed the agent's
        self.assertEqual(self.request("PATCH", "/api/properties/%d" % p["id"], {"price": 9000},
                                      token=t["access_token"]).status, 200)

    def test_admin_cannot_change_own_role_or_status(self):
        a = self.server.user("admin")
        path = "/api/users/%d" % a["id"]
        for body in ({"role": "buyer"}, {"role": "agent"}, {"status": "disabled"},
                     {"role": "buyer", "full_name": "Also renamed"}):
            with self.subTest(body=body):
                self.assert_error(self.request("PATCH", path, body, token=a["access_token"]), 409, "conflict")
        me = self.request("GET", "/api/me", token=a["access_token"])
        self.assertEqual(me.status, 200, repr(me))
        self.assertEqual((me.json["role"], me.json["status"]), ("admin", "active"))
        self.assertEqual(me.json["full_name"], "Admin User", "a refused PATCH changed the name")
        r = self.request("PATCH", path, {"full_name": "Admin Renamed"}, token=a["access_token"])
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["full_name"], "Admin Renamed")

    def test_admin_changes_another_admin(self):
        a = self.server.user("admin")
        self.assertEqual(self.request("GET", "/api/users", token=a["access_token"]).status, 200)
        r = self.as_root("PATCH", "/api/users/%d" % a["id"], {"role": "agent"})
        self.assertEqual(r.status, 200, repr(r))
        self.expect(self.request("GET", "/api/users", token=a["access_token"]), 403, "demoted admin")
        r = self.as_root("PATCH", "/api/users/%d" % a["id"], {"role": "admin", "status": "disabled"})
        self.assertEqual(r.status, 200, repr(r))
        self.expect(self.request("GET", "/api/users", token=a["access_token"]), 401, "disabled admin")

    # --- audit ---------------------------------------------------------------------------------

    def test_property_mutations_audited(self):
        tag = os.urandom(6).hex()
        agent = self.users["agent"]
        rids = {"property.create": "pc-" + tag, "property.update": "pu-" + tag, "property.delete": "pd-" + tag}
        r = self.request("POST", "/api/properties", valid_property(), token=agent["access_token"],
                         headers={"X-Request-ID": rids["property.create"], "X-Forwarded-For": REMOTE})
        self.assertEqual(r.status, 201, repr(r))
        pid = r.json["id"]
        path = "/api/properties/%d" % pid
        # refused attempts are not mutations: no entries for them
        refused = "px-" + tag
        r = self.request("PATCH", path, {"price": 3}, token=self.agent2["access_token"], headers={"X-Request-ID": refused})
        self.expect(r, 403, "other agent PATCH")
        r = self.request("PATCH", path, {"price": 300000}, token=agent["access_token"],
                         headers={"X-Request-ID": rids["property.update"], "X-Forwarded-For": REMOTE})
        self.assertEqual(r.status, 200, repr(r))
        r = self.request("DELETE", path, token=agent["access_token"],
                         headers={"X-Request-ID": rids["property.delete"], "X-Forwarded-For": REMOTE})
        self.assertEqual(r.status, 204, repr(r))

        found = {}
        for action, rid in rids.items():
            with self.subTest(action=action):
                items = self.audit("action=%s&resource_id=%d" % (action, pid))
                self.assertEqual(len(items), 1, "%s entries for listing %d: %r" % (action, pid, items))
                e = items[0]
                found[action] = e
                self.assertEqual(e["action"], action)
                self.assertEqual(e["actor_id"], agent["id"])
                self.assertEqual(e["resource_id"], str(pid))
                self.assertEqual(e["request_id"], rid)
                self.assertEqual(e["ip"], REMOTE)
                self.assertRegex(e["at"], RFC3339_RE)
        if len(found) != 3:
            return
        rtypes = {e["resource_type"] for e in found.values()}
        self.assertEqual(len(rtypes), 1, rtypes)
        self.assertEqual(rtypes, {"property"})
        # the listing's history, newest first, through the resource filters
        items = self.audit("resource_type=property&resource_id=%d" % pid)
        self.assertEqual([e["action"] for e in items], ["property.delete", "property.update", "property.create"])
        self.assertNotIn(refused, [e["request_id"] for e in self.audit("limit=100")])
        # and by actor
        mine = self.audit("actor_id=%d&resource_type=property&limit=100" % agent["id"])
        self.assertTrue({e["request_id"] for e in mine} >= set(rids.values()))
        for e in mine:
            self.assertEqual(e["actor_id"], agent["id"])

    def test_user_update_audited(self):
        u = self.server.user("buyer")
        rid = "uu-" + os.urandom(6).hex()
        r = self.as_root("PATCH", "/api/users/%d" % u["id"], {"role": "agent"}, headers={"X-Request-ID": rid})
        self.assertEqual(r.status, 200, repr(r))
        items = [e for e in self.audit("action=user.update&resource_id=%d" % u["id"]) if e["request_id"] == rid]
        self.assertEqual(len(items), 1, "no user.update entry for request %s" % rid)
        self.assertEqual(items[0]["actor_id"], self.root_id)
        self.assertEqual(items[0]["resource_id"], str(u["id"]))

    def test_audit_paging_and_time_filters(self):
        for _ in range(3):
            self.create_listing(self.tok("agent"))
        seen, cursor, pages, ats = [], None, 0, []
        while pages < 4:
            q = "limit=2" + ("&cursor=" + harness.urlquote(cursor) if cursor else "")
            r = self.as_root("GET", "/api/audit?" + q)
            self.assertEqual(r.status, 200, repr(r))
            self.assertLessEqual(len(r.json["items"]), 2)
            seen += [e["id"] for e in r.json["items"]]
            ats += [e["at"] for e in r.json["items"]]
            cursor = r.json["next_cursor"]
            pages += 1
            if cursor is None:
                break
        self.assertEqual(len(seen), len(set(seen)), "audit ids repeat across pages: %r" % seen)
        self.assertEqual(ats, sorted(ats, reverse=True), "not newest first")
        self.assertEqual(self.audit("since=2999-01-01T00:00:00Z"), [])
        self.assertEqual(self.audit("until=2000-01-01T00:00:00Z"), [])
        self.assertTrue(self.audit("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&limit=5"))
        for q in ("limit=0", "since=yesterday", "until=2024-13-45T99:00:00Z"):
            with self.subTest(q=q):
                r = self.as_root("GET", "/api/audit?" + q)
                self.assertIn(r.status, (400, 422), repr(r))


if __name__ == "__main__":
    harness.main()
