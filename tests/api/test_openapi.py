"""The OpenAPI document is valid-looking 3.1 and describes exactly the routes the router has."""
import re

import harness
from harness import ServerTestCase, run_cli

METHODS = {"get", "post", "patch", "delete", "put"}


class OpenApiTest(ServerTestCase):
    @classmethod
    def prepare(cls):
        r = run_cli(["routes"], cls.server.data_dir, timeout=30)
        cls.routes_rc, cls.routes_out, cls.routes_err = r.returncode, r.stdout, r.stderr

    def router_routes(self):
        self.assertEqual(self.routes_rc, 0, "hearth routes failed: %s" % self.routes_err)
        out = set()
        for line in self.routes_out.splitlines():
            if not line.strip():
                continue
            m = re.match(r"^(GET|POST|PATCH|DELETE|PUT) (/\S*)$", line.strip())
            self.assertIsNotNone(m, "bad line from hearth routes: %r" % line)
            out.add((m.group(1), m.group(2)))
        return out

    def doc(self):
        return self.get_json("/openapi.json")

    def test_document(self):
        r = self.request("GET", "/openapi.json")
        self.assertEqual(r.status, 200)
        self.assert_common_headers(r)
        d = r.json
        self.assertRegex(d["openapi"], r"^3\.1\.\d+$")
        self.assertIsInstance(d["info"]["title"], str)
        self.assertIsInstance(d["info"]["version"], str)
        self.assertIsInstance(d["paths"], dict)
        self.assertTrue(d["paths"])

    def test_routes_command(self):
        routes = self.router_routes()
        self.assertIn(("GET", "/health/live"), routes)
        self.assertIn(("GET", "/api/properties"), routes)
        self.assertIn(("POST", "/api/properties"), routes)
        self.assertIn(("GET", "/openapi.json"), routes)
        ids = [p for m, p in routes if p.startswith("/api/properties/")]
        self.assertTrue(ids)
        for m, p in routes:
            self.assertNotIn(m, ("HEAD", "OPTIONS"))

    def test_paths_match_router(self):
        documented = set()
        for path, item in self.doc()["paths"].items():
            for m in item:
                if m.lower() in METHODS | {"head", "options", "trace"}:
                    if m.lower() in ("head", "options"):
                        continue
                    documented.add((m.upper(), path))
        routes = self.router_routes()
        self.assertEqual(documented - routes, set(), "documented in /openapi.json but not routed")
        self.assertEqual(routes - documented, set(), "routed but not documented in /openapi.json")

    def test_operations_well_formed(self):
        d = self.doc()
        op_ids = set()
        for path, item in d["paths"].items():
            self.assertTrue(path.startswith("/"), path)
            params_in_path = set(re.findall(r"\{([^}]+)\}", path))
            for m, op in item.items():
                if m.lower() not in METHODS:
                    continue
                self.assertIsInstance(op.get("responses"), dict, "%s %s has no responses" % (m, path))
                self.assertTrue(op["responses"], "%s %s has no responses" % (m, path))
                if "operationId" in op:
                    self.assertNotIn(op["operationId"], op_ids, "duplicate operationId")
                    op_ids.add(op["operationId"])
                declared = {p.get("name") for p in op.get("parameters", []) + item.get("parameters", [])
                            if isinstance(p, dict) and p.get("in") == "path"}
                # $ref parameters are allowed; only check inline ones cover the template
                refs = [p for p in op.get("parameters", []) + item.get("parameters", []) if "$ref" in p]
                if not refs:
                    self.assertEqual(declared, params_in_path, "%s %s path parameters" % (m, path))

    def test_refs_resolve(self):
        d = self.doc()

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == "$ref" and isinstance(v, str):
                        self.assertTrue(v.startswith("#/"), v)
                        node = d
                        for part in v[2:].split("/"):
                            part = part.replace("~1", "/").replace("~0", "~")
                            self.assertIn(part, node, "unresolved $ref %s" % v)
                            node = node[part]
                    else:
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(d)

    def test_properties_documented(self):
        d = self.doc()
        get = d["paths"]["/api/properties"]["get"]
        names = set()
        for p in get.get("parameters", []):
            if "$ref" in p:
                node = d
                for part in p["$ref"][2:].split("/"):
                    node = node[part]
                p = node
            names.add(p["name"])
        for q in ("min_price", "max_price", "min_bedrooms", "min_bathrooms", "min_size_sqft", "max_size_sqft",
                  "city", "location", "property_type", "amenities", "max_commute_time", "min_school_rating",
                  "q", "sort", "limit", "cursor"):
            self.assertIn(q, names, "GET /api/properties does not document %s" % q)

    def test_every_static_get_route_answers(self):
        for m, p in sorted(self.router_routes()):
            if m != "GET" or "{" in p or p in ("/ws",) or "events" in p:
                continue
            with self.subTest(path=p):
                r = self.request("GET", p)
                self.assertNotIn(r.status, (404, 405), "routed GET %s answers %r" % (p, r))
                if p == "/api/ml/model-info" and r.status == 503:  # documented: no model trained here
                    self.assertEqual(r.json["error"]["code"], "unavailable")
                    continue
                self.assertLess(r.status, 500, "GET %s -> %r" % (p, r))
                self.assertIn("x-request-id", r.headers)


if __name__ == "__main__":
    harness.main()
