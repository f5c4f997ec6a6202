"""Properties: create, read, update, delete, validation, ETags and If-Match."""
import datetime
import json
import re
from decimal import Decimal

import harness
from harness import ServerTestCase, valid_property, RFC3339_UTC_RE

FIELDS = {"id", "title", "description", "price", "location", "city", "state", "zip", "latitude",
          "longitude", "bedrooms", "bathrooms", "size_sqft", "lot_size_sqft", "year_built",
          "amenities", "image_urls", "school_rating", "commute_time", "property_type", "status",
          "features", "source", "external_id", "owner_id", "version", "created_at", "updated_at"}
TYPES = {"single_family", "condo", "townhouse", "multi_family", "land", "other"}
STATUSES = {"active", "pending", "sold", "off_market"}


class CrudTest(ServerTestCase):
    def create(self, **over):
        r = self.request("POST", "/api/properties", valid_property(**over))
        self.assertEqual(r.status, 201, repr(r))
        return r

    def assert_property_shape(self, p):
        self.assertEqual(set(p.keys()), FIELDS, "property keys differ: extra %r missing %r"
                         % (set(p.keys()) - FIELDS, FIELDS - set(p.keys())))
        self.assertIsInstance(p["id"], int)
        self.assertIsInstance(p["version"], int)
        self.assertIsInstance(p["bedrooms"], int)
        self.assertIsInstance(p["size_sqft"], int)
        self.assertIsInstance(p["amenities"], list)
        self.assertIsInstance(p["image_urls"], list)
        self.assertIn(p["property_type"], TYPES)
        self.assertIn(p["status"], STATUSES)
        self.assertRegex(p["created_at"], RFC3339_UTC_RE)
        self.assertRegex(p["updated_at"], RFC3339_UTC_RE)

    # --- create ------------------------------------------------------------------------------

    def test_create_and_get(self):
        body = valid_property(title="Create and get", price=199999.99, school_rating=7.5,
                              commute_time=25, features={"fireplaces": 2},
                              image_urls=["https://img.example/a.jpg"])
        r = self.request("POST", "/api/properties", body)
        self.assertEqual(r.status, 201, repr(r))
        self.assert_common_headers(r)
        p = r.json
        self.assert_property_shape(p)
        self.assertEqual(r.headers.get("location"), "/api/properties/%d" % p["id"])
        self.assertEqual(r.headers.get("etag"), '"1"')
        self.assertEqual(p["version"], 1)
        for k in ("title", "description", "location", "city", "state", "zip", "bedrooms",
                  "bathrooms", "size_sqft", "lot_size_sqft", "year_built", "school_rating",
                  "commute_time", "property_type", "status", "features", "image_urls"):
            self.assertEqual(p[k], body[k], k)
        self.assertAlmostEqual(p["latitude"], body["latitude"], places=6)
        self.assertAlmostEqual(p["longitude"], body["longitude"], places=6)
        self.assertRegex(r.raw.decode(), r'"price":\s*199999\.99[,}\s]')

        g = self.request("GET", "/api/properties/%d" % p["id"])
        self.assertEqual(g.status, 200, repr(g))
        self.assert_common_headers(g)
        self.assertEqual(g.headers.get("etag"), '"1"')
        self.assertEqual(g.json, p)
        self.assertRegex(g.raw.decode(), r'"price":\s*199999\.99[,}\s]')

    def test_price_exact(self):
        for price in ("0.01", "0.1", "19.99", "199999.99", "1234567.5", "100", "99999999.99",
                      "0.07", "1.15", "2.675", "8.2"):
            if len(price.split(".")[-1]) > 2 and "." in price:
                continue
            raw = ('{"title":"Price %s","price":%s,"location":"1 Money Rd","bedrooms":1,'
                   '"bathrooms":1,"size_sqft":500}' % (price, price)).encode()
            r = self.request("POST", "/api/properties", raw, {"Content-Type": "application/json"})
            self.assertEqual(r.status, 201, "%s: %r" % (price, r))
            got = json.loads(r.raw, parse_float=Decimal)["price"]
            self.assertEqual(Decimal(got), Decimal(price), price)
            m = re.search(r'"price":\s*([0-9.eE+-]+)', r.raw.decode())
            self.assertLessEqual(len(m.group(1).split(".")[1]) if "." in m.group(1) else 0, 2,
                                 "price written with more than two decimals: %s" % m.group(1))
            self.assertNotIn("e", m.group(1).lower())
            g = self.request("GET", "/api/properties/%d" % r.json["id"])
            self.assertEqual(Decimal(json.loads(g.raw, parse_float=Decimal)["price"]), Decimal(price))

    def test_create_minimal_defaults(self):
        body = {"title": "Minimal", "price": 1000, "location": "Nowhere", "bedrooms": 0,
                "bathrooms": 0, "size_sqft": 1}
        r = self.request("POST", "/api/properties", body)
        self.assertEqual(r.status, 201, repr(r))
        p = r.json
        self.assert_property_shape(p)
        for k in ("description", "city", "lot_size_sqft", "year_built", "school_rating",
                  "commute_time", "features", "source", "external_id"):
            self.assertIsNone(p[k], k)
        self.assertEqual(p["amenities"], [])
        self.assertEqual(p["image_urls"], [])
        self.assertEqual(p["status"], "active")

    def test_content_type_with_charset(self):
        r = self.request("POST", "/api/properties", json.dumps(valid_property()).encode(),
                         {"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.status, 201, repr(r))

    def test_unicode_roundtrip(self):
        r = self.create(title="Maison à vendre — 日本 🏠", location="Straße 5, Zürich")
        g = self.request("GET", "/api/properties/%d" % r.json["id"])
        self.assertEqual(g.json["title"], "Maison à vendre — 日本 🏠")
        self.assertEqual(g.json["location"], "Straße 5, Zürich")

    def test_amenities_normalised(self):
        r = self.create(amenities=["Central Air", "POOL", "garage", "Hot-Tub"])
        am = r.json["amenities"]
        for a in am:
            self.assertRegex(a, r"^[a-z0-9_]+$")
        self.assertTrue({"central_air", "pool", "garage"} <= set(am), am)
        g = self.request("GET", "/api/properties/%d" % r.json["id"])
        self.assertEqual(g.json["amenities"], am)

    def test_year_built_bounds(self):
        year = datetime.datetime.now(datetime.timezone.utc).year
        self.create(year_built=year + 5)
        self.create(year_built=1600)
        r = self.request("POST", "/api/properties", valid_property(year_built=year + 6))
        self.assert_error(r, 422, "validation_failed", "year_built")
        r = self.request("POST", "/api/properties", valid_property(year_built=1599))
        self.assert_error(r, 422, "validation_failed", "year_built")

    def test_boundaries_accepted(self):
        self.create(bedrooms=100, bathrooms=100, school_rating=10, latitude=90, longitude=-180)
        self.create(bedrooms=0, bathrooms=0, school_rating=0, latitude=-90, longitude=180)

    def test_conflict_source_external_id(self):
        self.create(source="apitest", external_id="dup-1")
        r = self.request("POST", "/api/properties", valid_property(source="apitest", external_id="dup-1"))
        self.assert_error(r, 409, "conflict")
        self.create(source="apitest", external_id="dup-2")
        self.create(source="apitest-other", external_id="dup-1")

    # --- validation --------------------------------------------------------------------------

    def test_validation_errors(self):
        cases = [
            ("price", dict(price=-5)),
            ("price", dict(price=0)),
            ("price", dict(price=1.005)),
            ("price", dict(price="100")),
            ("title", dict(title=Ellipsis)),
            ("price", dict(price=Ellipsis)),
            ("location", dict(location=Ellipsis)),
            ("bedrooms", dict(bedrooms=Ellipsis)),
            ("bathrooms", dict(bathrooms=Ellipsis)),
            ("size_sqft", dict(size_sqft=Ellipsis)),
            ("title", dict(title="")),
            ("title", dict(title=None)),
            ("title", dict(title=12)),
            ("bedrooms", dict(bedrooms="three")),
            ("bedrooms", dict(bedrooms=2.5)),
            ("bedrooms", dict(bedrooms=-1)),
            ("bedrooms", dict(bedrooms=101)),
            ("bathrooms", dict(bathrooms=2.25)),
            ("bathrooms", dict(bathrooms=-0.5)),
            ("bathrooms", dict(bathrooms=100.5)),
            ("size_sqft", dict(size_sqft=0)),
            ("size_sqft", dict(size_sqft=-10)),
            ("size_sqft", dict(size_sqft=10.5)),
            ("school_rating", dict(school_rating=10.5)),
            ("school_rating", dict(school_rating=-1)),
            ("latitude", dict(latitude=90.5)),
            ("latitude", dict(latitude=-91)),
            ("longitude", dict(longitude=181)),
            ("property_type", dict(property_type="castle")),
            ("status", dict(status="bogus")),
            ("amenities", dict(amenities="pool")),
            ("amenities", dict(amenities=[1, 2])),
            ("image_urls", dict(image_urls="x")),
            ("features", dict(features=[1])),
            ("bogus_field", dict(bogus_field=1)),
            ("year_built", dict(year_built="1990")),
            ("commute_time", dict(commute_time=-5)),
            ("image_urls", dict(image_urls=["javascript:alert(1)"])),
            ("amenities", dict(amenities=["!!!"])),
            ("amenities", dict(amenities=[""])),
            ("external_id", dict(source="only-source")),
            ("title", dict(title="x" * 201)),
            ("title", dict(title="bad\x01control")),
        ]
        for field, over in cases:
            with self.subTest(field=field, over=over):
                r = self.request("POST", "/api/properties", valid_property(**over))
                self.assert_error(r, 422, "validation_failed", field)

    def test_several_errors_reported_together(self):
        r = self.request("POST", "/api/properties", valid_property(price=-5, bedrooms=-1, title=Ellipsis))
        err = self.assert_error(r, 422, "validation_failed")
        fields = {d["field"] for d in err["details"]}
        self.assertTrue({"price", "bedrooms", "title"} <= fields, fields)

    def test_body_not_object(self):
        for body in (b"[]", b"42", b'"x"', b"null"):
            r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
            self.assertIn(r.status, (400, 422), "%r -> %r" % (body, r))
            self.assert_error(r, r.status, "bad_request" if r.status == 400 else "validation_failed")

    def test_malformed_json(self):
        for body in (b'{"title": ', b"{title: 1}", b'{"a":1}}', b"", b"{'a':1}",
                     b'{"title":"x",}'):
            with self.subTest(body=body):
                r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
                self.assert_error(r, 400, "bad_request")

    def test_invalid_utf8(self):
        body = json.dumps(valid_property(title="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"bad \xff\xfe here")
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
        self.assert_error(r, 400, "bad_request")
        body = json.dumps(valid_property(title="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"\xc0\xaf")
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/json"})
        self.assert_error(r, 400, "bad_request")

    def test_unsupported_media_type(self):
        body = json.dumps(valid_property()).encode()
        r = self.request("POST", "/api/properties", body, {"Content-Type": "text/plain"})
        self.assert_error(r, 415, "unsupported_media_type")
        r = self.request("POST", "/api/properties", body)  # no Content-Type at all
        self.assert_error(r, 415, "unsupported_media_type")
        r = self.request("POST", "/api/properties", body, {"Content-Type": "application/x-www-form-urlencoded"})
        self.assert_error(r, 415, "unsupported_media_type")

    # --- update --------------------------------------------------------------------------------

    def test_patch(self):
        p = self.create(title="Patch me", description="old", school_rating=5).json
        pid = p["id"]
        r = self.request("PATCH", "/api/properties/%d" % pid, {"price": 300000.25, "bedrooms": 4})
        self.assertEqual(r.status, 200, repr(r))
        self.assert_common_headers(r)
        q = r.json
        self.assertEqual(q["version"], 2)
        self.assertEqual(r.headers.get("etag"), '"2"')
        self.assertEqual(q["bedrooms"], 4)
        self.assertRegex(r.raw.decode(), r'"price":\s*300000\.25[,}\s]')
        self.assertEqual(q["title"], "Patch me")
        self.assertEqual(q["created_at"], p["created_at"])
        self.assertGreaterEqual(q["updated_at"], p["updated_at"])
        g = self.request("GET", "/api/properties/%d" % pid)
        self.assertEqual(g.json, q)
        self.assertEqual(g.headers.get("etag"), '"2"')

        # null clears optional fields
        r = self.request("PATCH", "/api/properties/%d" % pid, {"description": None, "school_rating": None})
        self.assertEqual(r.status, 200, repr(r))
        self.assertIsNone(r.json["description"])
        self.assertIsNone(r.json["school_rating"])
        self.assertEqual(r.json["version"], 3)

        # null on a required field is 422 and changes nothing
        for f in ("title", "price", "location", "bedrooms", "bathrooms", "size_sqft"):
            r = self.request("PATCH", "/api/properties/%d" % pid, {f: None})
            self.assert_error(r, 422, "validation_failed", f)
        r = self.request("PATCH", "/api/properties/%d" % pid, {"price": -1})
        self.assert_error(r, 422, "validation_failed", "price")
        r = self.request("PATCH", "/api/properties/%d" % pid, {"nope": 1})
        self.assert_error(r, 422, "validation_failed", "nope")
        g = self.request("GET", "/api/properties/%d" % pid)
        self.assertEqual(g.json["version"], 3)
        self.assertEqual(g.json["title"], "Patch me")

    def test_patch_amenities_normalised(self):
        pid = self.create().json["id"]
        r = self.request("PATCH", "/api/properties/%d" % pid, {"amenities": ["Central Air"]})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["amenities"], ["central_air"])

    def test_patch_if_match(self):
        pid = self.create(title="If-Match").json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("PATCH", path, {"title": "v2"}, {"If-Match": '"1"'})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["version"], 2)
        r = self.request("PATCH", path, {"title": "stale"}, {"If-Match": '"1"'})
        self.assert_error(r, 412, "precondition_failed")
        g = self.request("GET", path)
        self.assertEqual(g.json["title"], "v2")
        self.assertEqual(g.json["version"], 2)
        r = self.request("PATCH", path, {"title": "v3"}, {"If-Match": '"2"'})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json["version"], 3)
        self.assertEqual(r.headers.get("etag"), '"3"')

    def test_patch_media_type_and_json(self):
        pid = self.create().json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("PATCH", path, b'{"title":"x"}')
        self.assert_error(r, 415, "unsupported_media_type")
        r = self.request("PATCH", path, b'{"title":', {"Content-Type": "application/json"})
        self.assert_error(r, 400, "bad_request")
        self.assertEqual(self.request("GET", path).json["version"], 1)

    def test_patch_missing(self):
        r = self.request("PATCH", "/api/properties/987654321", {"title": "x"})
        self.assert_error(r, 404, "not_found")

    # --- delete --------------------------------------------------------------------------------

    def test_delete(self):
        pid = self.create(title="Delete me").json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("DELETE", path, headers={"If-Match": '"7"'})
        self.assert_error(r, 412, "precondition_failed")
        self.assertEqual(self.request("GET", path).status, 200)
        r = self.request("DELETE", path)
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(r.raw, b"")
        self.assertIn("x-request-id", r.headers)
        self.assert_error(self.request("GET", path), 404, "not_found")
        self.assert_error(self.request("DELETE", path), 404, "not_found")
        self.assert_error(self.request("PATCH", path, {"title": "zombie"}), 404, "not_found")

    def test_delete_if_match_current(self):
        pid = self.create().json["id"]
        r = self.request("DELETE", "/api/properties/%d" % pid, headers={"If-Match": '"1"'})
        self.assertEqual(r.status, 204, repr(r))

    def test_get_missing_and_bad_ids(self):
        self.assert_error(self.request("GET", "/api/properties/987654321"), 404, "not_found")
        for bad in ("abc", "-1", "0", "1.5", "99999999999999999999999"):
            r = self.request("GET", "/api/properties/" + bad)
            self.assertIn(r.status, (400, 404), "%s -> %r" % (bad, r))
            self.assert_error(r, r.status, "bad_request" if r.status == 400 else "not_found")

    def test_media_type_case_insensitive(self):
        r = self.request("POST", "/api/properties", json.dumps(valid_property()).encode(),
                         {"Content-Type": "Application/JSON; Charset=UTF-8"})
        self.assertEqual(r.status, 201, repr(r))

    def test_price_more_decimals(self):
        for price in ("100.001", "0.001", "1234.567", "12345678.901", "199999.999"):
            raw = ('{"title":"P","price":%s,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":5}' % price).encode()
            r = self.request("POST", "/api/properties", raw, {"Content-Type": "application/json"})
            self.assert_error(r, 422, "validation_failed", "price")
        for price in ("1e13", "10000000000000", "-0.01"):
            raw = ('{"title":"P","price":%s,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":5}' % price).encode()
            r = self.request("POST", "/api/properties", raw, {"Content-Type": "application/json"})
            self.assert_error(r, 422, "validation_failed", "price")

    def test_json_string_edge_cases(self):
        for bad in (b'"a\u0000b"', b'"\ud800"'):
            raw = b'{"title":' + bad + b',"price":1,"location":"x","bedrooms":1,"bathrooms":1,"size_sqft":5}'
            r = self.request("POST", "/api/properties", raw, {"Content-Type": "application/json"})
            self.assertIn(r.status, (400, 422), "%r -> %r" % (bad, r))
            self.assert_error(r, r.status, "bad_request" if r.status == 400 else "validation_failed")
        r = self.request("POST", "/api/properties", valid_property(title="tab\there\u00e9 \"quoted\" \\ back"))
        self.assertEqual(r.status, 201, repr(r))
        self.assertEqual(self.request("GET", "/api/properties/%d" % r.json["id"]).json["title"],
                         "tab\there\u00e9 \"quoted\" \\ back")

    def test_head_item(self):
        pid = self.create().json["id"]
        g = self.request("GET", "/api/properties/%d" % pid)
        h = self.request("HEAD", "/api/properties/%d" % pid)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.raw, b"")
        self.assertEqual(h.headers.get("etag"), '"1"')
        self.assertEqual(h.headers.get("content-length"), g.headers.get("content-length"))

    def test_if_match_star_and_weak(self):
        pid = self.create().json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("PATCH", path, {"title": "star"}, {"If-Match": "*"})
        self.assertEqual(r.status, 200, repr(r))
        r = self.request("PATCH", path, {"title": "weak"}, {"If-Match": 'W/"2"'})
        self.assert_error(r, 412, "precondition_failed")  # If-Match uses the strong comparison
        self.assertEqual(self.request("GET", path).json["version"], 2)

    def test_conditional_get(self):
        pid = self.create().json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("GET", path, headers={"If-None-Match": '"1"'})
        self.assertEqual(r.status, 304, repr(r))
        self.assertEqual(r.raw, b"")
        self.assertEqual(r.headers.get("etag"), '"1"')
        self.assertIn("x-request-id", r.headers)
        r = self.request("GET", path, headers={"If-None-Match": '"2"'})
        self.assertEqual(r.status, 200)

    def test_if_match_list(self):
        # RFC 9110 13.1.1: If-Match is a list of entity tags; any one matching is enough
        pid = self.create().json["id"]
        path = "/api/properties/%d" % pid
        r = self.request("PATCH", path, {"title": "list"}, {"If-Match": '"9", "1"'})
        self.assertEqual(r.status, 200, repr(r))
        r = self.request("DELETE", path, headers={"If-Match": '"7","2"'})
        self.assertEqual(r.status, 204, repr(r))

    def test_search_follows_writes(self):
        pid = self.create(title="Xylophonic villa", city="Quahog").json["id"]
        ids = lambda qs: [i["id"] for i in self.get_json("/api/properties?limit=100&" + qs)["items"]]
        self.assertEqual(ids("q=xylophonic"), [pid])
        self.assertEqual(ids("city=quahog"), [pid])
        r = self.request("PATCH", "/api/properties/%d" % pid, {"title": "Marimbic villa", "city": "Langley Falls"})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(ids("q=xylophonic"), [])
        self.assertEqual(ids("q=marimbic"), [pid])
        self.assertEqual(ids("city=quahog"), [])
        self.assertEqual(ids("city=langley%20falls"), [pid])
        self.assertEqual(self.request("DELETE", "/api/properties/%d" % pid).status, 204)
        self.assertEqual(ids("q=marimbic"), [])
        self.assertNotIn(pid, ids("limit=100"))

    def test_read_only_fields_ignored(self):
        r = self.create(id=987654, version=50, owner_id=3, created_at="2000-01-01T00:00:00Z")
        self.assertNotEqual(r.json["id"], 987654)
        self.assertEqual(r.json["version"], 1)
        self.assertNotEqual(r.json["created_at"], "2000-01-01T00:00:00Z")

    def test_patch_to_taken_external_id(self):
        self.create(source="apitest", external_id="taken-1")
        pid = self.create(source="apitest", external_id="free-1").json["id"]
        r = self.request("PATCH", "/api/properties/%d" % pid, {"external_id": "taken-1"})
        self.assert_error(r, 409, "conflict")
        self.assertEqual(self.request("GET", "/api/properties/%d" % pid).json["external_id"], "free-1")

    def test_created_visible_in_list(self):
        pid = self.create(title="Listed").json["id"]
        doc = self.get_json("/api/properties?limit=100")
        self.assertIn(pid, [i["id"] for i in doc["items"]])


if __name__ == "__main__":
    harness.main()
