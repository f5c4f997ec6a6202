"""Preferences and recommendations: POST /api/preferences, GET /api/recommendations?session_id=,
POST /api/recommendations. Validation of every preference (type, range, unknown fields, none at
all, limit), sessions (created, read back, owned by the user whose token came), the answer's shape
and order (score, then price, then id; the same request answers the same bytes), the hard budget
(a home over it never appears, its within-budget twin does), a wanted amenity a home has never
lowers its score, reasons that state the breakdown's own numbers, the cache (answers are kept, and
a PATCH of a price shows in the next answer at once), and the price model: without one every
predicted_price is null and value neutral; with one each estimate is the one
POST /api/ml/predict-price gives for the full listing, and a new active model version changes the
answer at once. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL."""
import json
import re
import time
import urllib.parse
from decimal import Decimal

import harness
from harness import ServerTestCase, valid_property

WEIGHTS = {"budget": 30, "bedrooms": 5, "commute": 15, "school": 10, "amenities": 20, "value": 20}
PROPERTY_KEYS = {"id", "title", "description", "price", "location", "city", "state", "zip", "latitude",
                 "longitude", "bedrooms", "bathrooms", "size_sqft", "lot_size_sqft", "year_built",
                 "amenities", "image_urls", "school_rating", "commute_time", "property_type", "status",
                 "source", "external_id", "owner_id", "version", "created_at", "updated_at"}
SESSION_RE = re.compile(r"^[0-9a-f]{32}$")
# answers stay cached long enough that only an invalidation can explain a fresh one
LONG_CACHE = {"HEARTH_CACHE_TTL_MS": "600000"}
ROUNDS = {"HEARTH_MODEL_ROUNDS": "25"}


def dollars(text):
    return Decimal(text.replace("$", "").replace(",", ""))


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class RecommendationCase(ServerTestCase):
    LOAD_DATA = True

    def recommend(self, prefs, status=200, token=None, raw=False):
        r = self.request("POST", "/api/recommendations", prefs, token=token)
        if raw:
            return r
        self.assertEqual(r.status, status, "POST /api/recommendations %r -> %r" % (prefs, r))
        return r.json

    def session(self, prefs, token=None):
        r = self.request("POST", "/api/preferences", prefs, token=token)
        self.assertEqual(r.status, 201, repr(r))
        return r

    def assert_item_consistent(self, item, prefs):
        """Shape, score = weighted mean of the breakdown, and every reason derived from the same
        numbers as the breakdown."""
        self.assertEqual(set(item), {"property", "score", "breakdown", "predicted_price", "reasons"})
        p, b, reasons = item["property"], item["breakdown"], item["reasons"]
        self.assertEqual(set(p), PROPERTY_KEYS, "property without features, as in a list")
        self.assertEqual(p["status"], "active")
        expected = {"value"}
        expected |= {"budget"} if "budget" in prefs else set()
        expected |= {"bedrooms"} if "min_bedrooms" in prefs else set()
        expected |= {"commute"} if "max_commute_time" in prefs else set()
        expected |= {"school"} if "min_school_rating" in prefs else set()
        expected |= {"amenities"} if prefs.get("preferred_amenities") else set()
        self.assertEqual(set(b), expected)
        for k, v in b.items():
            self.assertTrue(0 <= v <= 1, (k, v))
            self.assertEqual(round(v, 3), v, "breakdown values have three decimals at most")
        mean = sum(WEIGHTS[k] * v for k, v in b.items()) / sum(WEIGHTS[k] for k in b)
        self.assertAlmostEqual(item["score"], mean, delta=0.00051)
        self.assertEqual(len(reasons), len(b), reasons)
        text = " | ".join(reasons)
        if "budget" in prefs:
            m = re.search(r"(\$[\d,]+(?:\.\d\d)?) under your budget|exactly your budget", text)
            self.assertIsNotNone(m, text)
            left = Decimal(str(prefs["budget"])) - Decimal(str(p["price"]))
            self.assertGreaterEqual(left, 0, "a home over budget was recommended")
            self.assertEqual(dollars(m.group(1)) if m.group(1) else Decimal(0), left, text)
            self.assertAlmostEqual(b["budget"], round(0.8 + 0.2 * float(left) / prefs["budget"], 3), delta=0.0011)
        if "min_bedrooms" in prefs:
            self.assertIn("%d bedroom" % p["bedrooms"], text)
            self.assertGreaterEqual(p["bedrooms"], prefs["min_bedrooms"])
        if "max_commute_time" in prefs:
            if p["commute_time"] is None:
                self.assertIn("commute time unknown", text)
                self.assertEqual(b["commute"], 0.5)
            elif p["commute_time"] <= prefs["max_commute_time"]:
                self.assertIn("%d min commute, within your %d" % (p["commute_time"], prefs["max_commute_time"]), text)
                self.assertEqual(b["commute"], 1)
            else:
                self.assertIn("%d min commute, %d over your %d" % (
                    p["commute_time"], p["commute_time"] - prefs["max_commute_time"], prefs["max_commute_time"]), text)
                self.assertLess(b["commute"], 1)
        if "min_school_rating" in prefs:
            if p["school_rating"] is None:
                self.assertIn("school rating unknown", text)
                self.assertEqual(b["school"], 0.5)
            else:
                self.assertIn("school rating %g" % p["school_rating"], text)
        if prefs.get("preferred_amenities"):
            wanted = {slug(a) for a in prefs["preferred_amenities"]}
            have = len(wanted & set(p["amenities"]))
            m = re.search(r"(\d+) of (\d+) wanted amenit(?:y|ies)", text)
            self.assertIsNotNone(m, text)
            self.assertEqual((int(m.group(1)), int(m.group(2))), (have, len(wanted)))
            self.assertAlmostEqual(b["amenities"], round(have / len(wanted), 3), delta=0.0005)
        est = item["predicted_price"]
        if est is None:
            self.assertIn("no price estimate available", text)
            self.assertEqual(b["value"], 0.5)
        else:
            d = (Decimal(str(est)) - Decimal(str(p["price"]))) / Decimal(str(est))
            m = re.search(r"priced (\d+)% (below|above) its estimated value \((\$[\d,.]+)\)"
                          r"|priced at its estimated value \((\$[\d,.]+)\)", text)
            self.assertIsNotNone(m, text)
            self.assertEqual(dollars(m.group(3) or m.group(4)), Decimal(str(est)))
            if m.group(1):
                self.assertLessEqual(abs(int(m.group(1)) - abs(float(d)) * 100), 0.51, text)
                self.assertEqual(m.group(2), "below" if d > 0 else "above")
            else:
                self.assertLess(abs(float(d)), 0.005)
            self.assertAlmostEqual(b["value"], min(1, max(0, 0.5 + 2.5 * float(d))), delta=0.0011)

    def assert_ranked(self, items):
        keys = [(-it["score"], Decimal(str(it["property"]["price"])), it["property"]["id"]) for it in items]
        self.assertEqual(keys, sorted(keys), "not in order of score, then price, then id")
        self.assertEqual(len({it["property"]["id"] for it in items}), len(items), "a home listed twice")


class RecommendationsTest(RecommendationCase):
    ENV = LONG_CACHE

    # --- validation ------------------------------------------------------------------------------

    BAD = [
        ({"budget": "250000"}, "budget"), ({"budget": 0}, "budget"), ({"budget": -10}, "budget"),
        ({"budget": 100.001}, "budget"), ({"budget": True}, "budget"), ({"budget": [1]}, "budget"),
        ({"location": 12}, "location"), ({"location": ""}, "location"), ({"location": "x" * 201}, "location"),
        ({"min_bedrooms": "3"}, "min_bedrooms"), ({"min_bedrooms": 2.5}, "min_bedrooms"),
        ({"min_bedrooms": -1}, "min_bedrooms"), ({"min_bedrooms": 21}, "min_bedrooms"),
        ({"max_commute_time": 0}, "max_commute_time"), ({"max_commute_time": 301}, "max_commute_time"),
        ({"max_commute_time": "30"}, "max_commute_time"),
        ({"min_school_rating": 10.5}, "min_school_rating"), ({"min_school_rating": -0.1}, "min_school_rating"),
        ({"min_school_rating": "8"}, "min_school_rating"),
        ({"preferred_amenities": "pool"}, "preferred_amenities"),
        ({"preferred_amenities": ["pool", 3]}, "preferred_amenities"),
        ({"preferred_amenities": ["%%%"]}, "preferred_amenities"),
        ({"preferred_amenities": ["a%d" % i for i in range(51)]}, "preferred_amenities"),
        ({"budget": 200000, "bathrooms": 2}, "bathrooms"),
        ({}, "preferences"), ({"preferred_amenities": []}, "preferences"), ({"budget": None}, "preferences"),
    ]

    def test_validation_of_each_preference(self):
        for path in ("/api/preferences", "/api/recommendations"):
            for body, field in self.BAD:
                r = self.request("POST", path, body, token=None)
                self.assert_error(r, 422, "validation_failed", field=field)

    def test_every_problem_reported_at_once(self):
        r = self.request("POST", "/api/recommendations", {"budget": "x", "min_bedrooms": 99, "colour": "red"}, token=None)
        err = self.assert_error(r, 422, "validation_failed")
        self.assertEqual({d["field"] for d in err["details"]}, {"budget", "min_bedrooms", "colour"})

    def test_limit(self):
        base = {"budget": 500000}
        for bad in (0, 51, "3", 2.5):
            r = self.request("POST", "/api/recommendations", dict(base, limit=bad), token=None)
            self.assert_error(r, 422, "validation_failed", field="limit")
        # a session stores preferences, not a limit
        self.assert_error(self.request("POST", "/api/preferences", dict(base, limit=3), token=None),
                          422, "validation_failed", field="limit")
        sid = self.session(base).json["session_id"]
        for bad in ("0", "51", "-1"):
            self.assert_error(self.request("GET", "/api/recommendations?session_id=%s&limit=%s" % (sid, bad)),
                              422, "validation_failed", field="limit")
        self.assert_error(self.request("GET", "/api/recommendations?session_id=%s&limit=abc" % sid), 400, "bad_request")
        self.assertEqual(len(self.get_json("/api/recommendations?session_id=%s" % sid)["items"]), 3)
        self.assertEqual(len(self.get_json("/api/recommendations?session_id=%s&limit=7" % sid)["items"]), 7)
        self.assertEqual(len(self.recommend(dict(base, limit=50))["items"]), 50)
        self.assertEqual(len(self.recommend(base)["items"]), 3)

    def test_not_json(self):
        r = self.request("POST", "/api/recommendations", b"budget=5", {"Content-Type": "application/x-www-form-urlencoded"},
                         token=None)
        self.assert_error(r, 415, "unsupported_media_type")
        r = self.request("POST", "/api/preferences", b"{nope", {"Content-Type": "application/json"}, token=None)
        self.assert_error(r, 400, "bad_request")
        r = self.request("POST", "/api/recommendations", b"[1, 2]", {"Content-Type": "application/json"}, token=None)
        self.assert_error(r, 422, "validation_failed")

    def test_no_input_makes_it_fail(self):
        bodies = [b"null", b"0", b'"x"', b"[]", b"{}", b'{"budget": {}}', b'{"budget": 1e400}', b'{"budget": -0.0}',
                  b'{"budget": 9999999999999999999999}', b'{"location": "\\u0000x"}', b'{"location": "\\ud800"}',
                  b'{"location": "%s"}' % ("\u00e9" * 300).encode(), b'{"preferred_amenities": [[[]]]}',
                  b'{"preferred_amenities": ["' + b"a" * 70 + b'"]}', b'{"min_bedrooms": 1e10}',
                  b'{"max_commute_time": -1e308}', b'{"min_school_rating": 1e-320}', b'{"budget": 1, "budget": 2}',
                  b'{"location": "%"}', b'{"location": "_"}', b'{"location": "\\\\"}', b'{"location": "\' OR 1=1 --"}',
                  b'[' * 5000 + b']' * 5000, b'{"limit": 3}', b'{"budget": 100000, "limit": null}']
        for path in ("/api/recommendations", "/api/preferences"):
            for body in bodies:
                r = self.request("POST", path, body, {"Content-Type": "application/json"}, token=None)
                self.assertIn(r.status, (200, 201, 400, 422), "%s %r -> %r" % (path, body[:60], r))
                if r.status >= 400:
                    self.assert_error(r, r.status, "bad_request" if r.status == 400 else "validation_failed")
        self.assertTrue(self.server.alive())

    def test_sessions(self):
        prefs = {"budget": 180000, "preferred_amenities": ["Garage", "central air", "garage"], "min_bedrooms": 2.0,
                 "location": " Ames "}
        r = self.session(prefs)
        self.assert_common_headers(r)
        sid = r.json["session_id"]
        self.assertRegex(sid, SESSION_RE)
        self.assertEqual(r.json["preferences"], {"budget": 180000, "location": "Ames", "min_bedrooms": 2,
                                                 "preferred_amenities": ["central_air", "garage"]})
        self.assertEqual(r.headers.get("location"), "/api/recommendations?session_id=" + sid)
        self.assertNotEqual(self.session(prefs).json["session_id"], sid, "session ids are drawn anew")
        got = self.request("GET", "/api/recommendations?session_id=%s&limit=5" % sid)
        self.assertEqual(got.status, 200, repr(got))
        self.assert_common_headers(got)
        inline = self.request("POST", "/api/recommendations", dict(prefs, limit=5), token=None)
        self.assertEqual(inline.status, 200, repr(inline))
        self.assertEqual(got.json, inline.json, "a session answers as its preferences inline do")
        self.assertTrue(got.json["items"])
        for it in got.json["items"]:
            self.assert_item_consistent(it, r.json["preferences"])
            self.assertIn("Ames", it["property"]["location"])

    def test_unknown_session(self):
        for sid in ("0" * 32, "f" * 32, "not-a-session", "A" * 32, "%27%20OR%201=1", "x" * 300):
            r = self.request("GET", "/api/recommendations?session_id=" + sid)
            self.assert_error(r, 404, "not_found")
        self.assert_error(self.request("GET", "/api/recommendations"), 422, "validation_failed", field="session_id")
        self.assert_error(self.request("GET", "/api/recommendations?session_id="), 422, "validation_failed",
                          field="session_id")

    def test_session_of_a_user_is_theirs(self):
        buyer, other = self.server.user("buyer"), self.server.user("buyer")
        sid = self.session({"budget": 300000}, token=buyer["access_token"]).json["session_id"]
        path = "/api/recommendations?session_id=" + sid
        self.assertEqual(self.request("GET", path, token=buyer["access_token"]).status, 200)
        self.assertEqual(self.request("GET", path, token=self.server.admin_token()).status, 200)
        self.assert_error(self.request("GET", path, token=None), 401, "unauthorized")
        self.assert_error(self.request("GET", path, token=other["access_token"]), 403, "forbidden")
        # an anonymous session is anyone's who has its id
        anon = self.session({"budget": 300000}).json["session_id"]
        self.assertEqual(self.request("GET", "/api/recommendations?session_id=" + anon,
                                      token=other["access_token"]).status, 200)
        # a bad token is never ignored, even on public routes
        for method, path, body in (("POST", "/api/preferences", {"budget": 1}),
                                   ("POST", "/api/recommendations", {"budget": 1}),
                                   ("GET", "/api/recommendations?session_id=" + anon, None)):
            self.assert_error(self.request(method, path, body, token="not.a.token"), 401, "unauthorized")

    # --- the answer ------------------------------------------------------------------------------

    def test_answer_shape_order_and_determinism(self):
        prefs = {"budget": 250000, "min_bedrooms": 2, "max_commute_time": 20, "min_school_rating": 6,
                 "preferred_amenities": ["garage", "fireplace", "central air", "pool"], "limit": 50}
        r1 = self.recommend(prefs, raw=True)
        r2 = self.recommend(prefs, raw=True)
        self.assertEqual(r1.status, 200, repr(r1))
        self.assert_common_headers(r1)
        self.assertEqual(set(r1.json), {"items"})
        self.assertEqual(r1.raw, r2.raw, "the same request answers the same bytes")
        items = r1.json["items"]
        self.assertGreater(len(items), 10)
        self.assert_ranked(items)
        for it in items:
            self.assert_item_consistent(it, prefs)
            self.assertIsNone(it["predicted_price"], "no model is trained in this class")
            self.assertRegex(r1.raw.decode(), r'"price":\s*%s[,}]' % re.escape(json.dumps(it["property"]["price"])))
        # the whole candidate set, best first: the top 3 are the first 3 of the top 50
        top3 = self.recommend(dict(prefs, limit=3))["items"]
        self.assertEqual([i["property"]["id"] for i in top3], [i["property"]["id"] for i in items[:3]])

    def test_every_candidate_meets_the_hard_constraints(self):
        everything = self.fetch_all("status=active")
        prefs = {"budget": 150000, "min_bedrooms": 3, "location": "ames", "limit": 50}
        items = self.recommend(prefs)["items"]
        eligible = {p["id"] for p in everything
                    if Decimal(str(p["price"])) <= 150000 and p["bedrooms"] >= 3 and "ames" in p["location"].lower()}
        got = {i["property"]["id"] for i in items}
        self.assertTrue(items)
        if len(eligible) <= 50:
            self.assertEqual(got, eligible, "every eligible home is a candidate")
        self.assertLessEqual(got, eligible)
        for it in items:
            self.assertLessEqual(Decimal(str(it["property"]["price"])), 150000)
            self.assertGreaterEqual(it["property"]["bedrooms"], 3)
            self.assertIn("ames", it["property"]["location"].lower())

    def test_nothing_matches(self):
        self.assertEqual(self.recommend({"location": "Atlantis"}), {"items": []})
        self.assertEqual(self.recommend({"budget": 0.01}), {"items": []})

    def test_over_budget_never_appears_nor_outranks(self):
        tag = "Brambleford"
        budget = Decimal("200000")
        twin = dict(location="1 Twin Rd, %s, IA" % tag, city="Ames", bedrooms=3, commute_time=5, school_rating=9,
                    amenities=["garage", "pool", "fireplace"])
        within = self.request("POST", "/api/properties", valid_property(title="Within", price=190000, **twin)).json
        over = self.request("POST", "/api/properties", valid_property(title="Over", price=200000.01, **twin)).json
        at = self.request("POST", "/api/properties", valid_property(title="At", price=200000, **twin)).json
        prefs = {"budget": float(budget), "location": tag, "max_commute_time": 10, "min_school_rating": 8,
                 "preferred_amenities": ["garage", "pool", "fireplace"], "limit": 50}
        items = self.recommend(prefs)["items"]
        ids = [i["property"]["id"] for i in items]
        self.assertEqual(ids, [within["id"], at["id"]], "the home over budget is excluded; the cheaper twin first")
        self.assertNotIn(over["id"], ids)
        self.assertGreater(items[0]["score"], items[1]["score"])
        self.assertIn("exactly your budget", items[1]["reasons"])
        for it in items:
            self.assert_item_consistent(it, prefs)
        self.assert_ranked(items)
        # without a budget the dearer home is a candidate again, ranked after its cheaper twins
        items = self.recommend({"location": tag, "limit": 50})["items"]
        self.assertEqual([i["property"]["id"] for i in items], [within["id"], at["id"], over["id"]])

    def test_wanted_amenity_never_lowers_a_score(self):
        base = {"budget": 400000, "preferred_amenities": ["pool", "deck"], "limit": 50}
        before = {i["property"]["id"]: i for i in self.recommend(base)["items"]}
        amenities = set()
        for it in before.values():
            amenities |= set(it["property"]["amenities"])
        self.assertTrue(amenities - {"pool", "deck"})
        checked = 0
        for extra in sorted(amenities - {"pool", "deck"}):
            after = {i["property"]["id"]: i for i in self.recommend(
                dict(base, preferred_amenities=base["preferred_amenities"] + [extra]))["items"]}
            for pid, it in after.items():
                if pid in before and extra in it["property"]["amenities"]:
                    self.assertGreaterEqual(it["score"], before[pid]["score"], "adding %s lowered home %d" % (extra, pid))
                    self.assertGreaterEqual(it["breakdown"]["amenities"], before[pid]["breakdown"]["amenities"])
                    checked += 1
        self.assertGreater(checked, 10)

    def test_unknown_school_rating_is_neutral(self):
        items = self.recommend({"min_school_rating": 7, "limit": 10})["items"]
        self.assertTrue(items)
        for it in items:  # the imported listings have no school ratings
            if it["property"]["school_rating"] is None:
                self.assertEqual(it["breakdown"]["school"], 0.5)
                self.assertIn("school rating unknown", it["reasons"])

    # --- cache -----------------------------------------------------------------------------------

    def test_cache_kept_and_invalidated_by_a_patch(self):
        tag = "Cobblestead"
        home = self.request("POST", "/api/properties", valid_property(
            title="Cached", price=150000, location="9 Cache Ct, %s, IA" % tag, commute_time=12)).json
        prefs = {"budget": 160000, "location": tag}
        first = self.recommend(prefs)["items"]
        self.assertEqual([i["property"]["id"] for i in first], [home["id"]])
        self.assertIn("$10,000 under your budget", first[0]["reasons"])
        # a change behind the API's back is not seen: the answer is cached ...
        harness.sql(self.server, "UPDATE properties SET price_cents = 14000000 WHERE id = %d" % home["id"])
        self.assertEqual(self.recommend(prefs)["items"], first)
        # ... and a change through it is seen at once, in sessions too
        sid = self.session(prefs).json["session_id"]
        r = self.request("PATCH", "/api/properties/%d" % home["id"], {"price": 120000.5})
        self.assertEqual(r.status, 200, repr(r))
        for items in (self.recommend(prefs)["items"],
                      self.get_json("/api/recommendations?session_id=" + sid)["items"]):
            self.assertEqual(items[0]["property"]["price"], 120000.5)
            self.assertIn("$39,999.50 under your budget", items[0]["reasons"])
            self.assert_item_consistent(items[0], prefs)
        # over budget now: gone at once
        r = self.request("PATCH", "/api/properties/%d" % home["id"], {"price": 160000.01})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.recommend(prefs)["items"], [])
        # no longer listed: gone too
        self.request("PATCH", "/api/properties/%d" % home["id"], {"price": 100000})
        self.assertEqual(len(self.recommend(prefs)["items"]), 1)
        self.request("PATCH", "/api/properties/%d" % home["id"], {"status": "sold"})
        self.assertEqual(self.recommend(prefs)["items"], [])

    def test_same_preferences_share_an_answer(self):
        a = self.recommend({"preferred_amenities": ["Garage", "pool"], "budget": 300000}, raw=True)
        b = self.recommend({"budget": 300000.00, "preferred_amenities": ["pool", "garage", "GARAGE"]}, raw=True)
        self.assertEqual(a.raw, b.raw)


def div_round(num, den):
    return (num + den // 2) // den


def clamp(v):
    return max(0, min(1000, v))


def round_half_away(x):
    return int(Decimal(repr(x)).quantize(Decimal(1), rounding="ROUND_HALF_UP"))


def brute_force(homes, prefs, limit):
    """The best `limit` homes by scoring every listing in Python, as docs/recommendations.md says
    (no model: value 0.5): [(id, score in thousandths)]."""
    cents = lambda d: int((Decimal(str(d)) * 100).to_integral_value())
    ranked = []
    for h in homes:
        price = cents(h["price"])
        if h["status"] != "active":
            continue
        if "budget" in prefs and price > cents(prefs["budget"]):
            continue
        if "min_bedrooms" in prefs and h["bedrooms"] < prefs["min_bedrooms"]:
            continue
        if "location" in prefs and prefs["location"].strip().lower() not in h["location"].lower():
            continue
        m = {"value": 500}
        if "budget" in prefs:
            b = cents(prefs["budget"])
            m["budget"] = clamp(800 + div_round(200 * (b - price), b))
        if "min_bedrooms" in prefs:
            mb = prefs["min_bedrooms"]
            m["bedrooms"] = 1000 if h["bedrooms"] >= mb else clamp(div_round(1000 * max(h["bedrooms"], 0), mb))
        if "max_commute_time" in prefs:
            mx, c = prefs["max_commute_time"], h["commute_time"]
            m["commute"] = (500 if c is None else 1000 if c <= mx else 0 if c - mx >= mx
                            else clamp(1000 - div_round(1000 * (c - mx), mx)))
        if "min_school_rating" in prefs:
            ms, r = prefs["min_school_rating"], h["school_rating"]
            m["school"] = (500 if r is None else 1000 if r >= ms or ms <= 0
                           else clamp(round_half_away(1000.0 * max(r, 0) / ms)))
        if "preferred_amenities" in prefs:
            want = sorted({slug(a) for a in prefs["preferred_amenities"]})
            have = sum(1 for a in want if a in (h["amenities"] or []))
            m["amenities"] = clamp(div_round(1000 * have, len(want)))
        score = div_round(sum(WEIGHTS[k] * v for k, v in m.items()), sum(WEIGHTS[k] for k in m))
        ranked.append((-score, price, h["id"]))
    ranked.sort()
    return [(i, -s) for s, _, i in ranked[:limit]]


class SnapshotTest(RecommendationCase):
    """The answers come from an in-process snapshot of the listings: they are the same as scoring
    every listing, and every write through the API shows in the very next answer."""
    ENV = LONG_CACHE

    def ids(self, prefs):
        return [i["property"]["id"] for i in self.recommend(prefs)["items"]]

    def test_equal_to_scoring_every_listing(self):
        homes = self.fetch_all()
        for prefs in ({"budget": 200000, "limit": 20},
                      {"budget": 180000, "min_bedrooms": 3, "max_commute_time": 20,
                       "preferred_amenities": ["garage", "central air", "deck"], "limit": 25},
                      {"location": "sacramento", "min_bedrooms": 2, "limit": 15},
                      {"location": "  CA 958", "budget": 150000, "preferred_amenities": ["pool"], "limit": 10},
                      {"location": "n", "max_commute_time": 5, "limit": 50},
                      {"preferred_amenities": ["fireplace", "basement", "garage", "pool"], "limit": 50},
                      {"min_school_rating": 7, "budget": 400000.5, "limit": 30},
                      {"location": "Ames, IA", "budget": 95000, "min_bedrooms": 4, "limit": 50}):
            items = self.recommend(prefs)["items"]
            self.assertEqual([(i["property"]["id"], round(i["score"] * 1000)) for i in items],
                             brute_force(homes, prefs, prefs["limit"]), repr(prefs))

    def test_a_price_change_of_a_home_not_yet_listed_shows_at_once(self):
        tag = "Thistlebrook"
        a = self.request("POST", "/api/properties", valid_property(
            title="A", price=100000, location="1 Snap St, %s, IA" % tag)).json
        b = self.request("POST", "/api/properties", valid_property(
            title="B", price=110000, location="2 Snap St, %s, IA" % tag)).json
        prefs = {"budget": 200000, "location": tag, "limit": 1}
        self.assertEqual(self.ids(prefs), [a["id"]])
        r = self.request("PATCH", "/api/properties/%d" % b["id"], {"price": 90000})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.ids(prefs), [b["id"]], "the cheaper home wins at once")
        items = self.recommend(dict(prefs, limit=5))["items"]
        self.assertEqual([(i["property"]["id"], i["property"]["price"]) for i in items],
                         [(b["id"], 90000), (a["id"], 100000)])

    def test_a_new_listing_appears_and_a_deleted_one_disappears(self):
        tag = "Marrowgate"
        prefs = {"location": tag, "preferred_amenities": ["pool"], "limit": 5}
        self.assertEqual(self.ids(prefs), [])
        home = self.request("POST", "/api/properties", valid_property(
            title="New", price=150000, location="3 Fresh Rd, %s, IA" % tag, amenities=["pool"])).json
        self.assertEqual(self.ids(prefs), [home["id"]])
        # it wins across the whole catalogue too: the best pool home within a tight budget
        self.assertIn(home["id"], self.ids({"budget": 150000, "preferred_amenities": ["pool"], "limit": 50}))
        r = self.request("DELETE", "/api/properties/%d" % home["id"])
        self.assertIn(r.status, (200, 204), repr(r))
        self.assertEqual(self.ids(prefs), [])
        self.assertNotIn(home["id"], self.ids({"budget": 150000, "preferred_amenities": ["pool"], "limit": 50}))

    def test_a_change_behind_the_apis_back_is_caught_by_the_read_back(self):
        tag = "Gorsewick"
        home = self.request("POST", "/api/properties", valid_property(
            title="Sneaky", price=100000, location="4 Back Ln, %s, IA" % tag)).json
        prefs = {"budget": 120000, "location": tag}
        self.assertEqual(self.ids(prefs), [home["id"]])
        # another process without Redis: the row changes, the generation does not
        harness.sql(self.server, "UPDATE properties SET price_cents = 11000000, version = version + 1 WHERE id = %d"
                    % home["id"])
        items = self.recommend(dict(prefs, max_commute_time=30))["items"]  # not a cached answer
        self.assertEqual([i["property"]["price"] for i in items], [110000], "the winner is read back as it is")
        self.assertIn("$10,000 under your budget", items[0]["reasons"])

    def test_non_ascii_locations_match_as_the_store_matches(self):
        home = self.request("POST", "/api/properties", valid_property(
            title="Umlaut", price=120000, location="5 Straße, Ämberg, IA")).json
        for needle in ("Ämberg", "straße", "berg, IA"):
            self.assertIn(home["id"], self.ids({"location": needle, "limit": 50}), needle)
            listed = {p["id"] for p in self.fetch_all("location=" + urllib.parse.quote(needle))}
            self.assertIn(home["id"], listed, needle)
        self.assertEqual(self.ids({"location": "Zürich"}), [])


class WithModelTest(RecommendationCase):
    ENV = dict(LONG_CACHE, **ROUNDS)

    @classmethod
    def wait_for_version(cls, version):
        deadline = time.time() + 10
        while time.time() < deadline:  # the server looks for a new active version once a second
            r = cls.server.request("GET", "/api/ml/model-info", token=None)
            if r.status == 200 and r.json.get("version") == version:
                return
            time.sleep(0.1)
        raise AssertionError("model version %d was not picked up by the running server" % version)

    @classmethod
    def train(cls, rounds, *args):
        r = harness.run_cli(["train"] + list(args), cls.server.data_dir, {"HEARTH_MODEL_ROUNDS": str(rounds)},
                            timeout=120)
        if r.returncode != 0:
            raise AssertionError("hearth train exited %d: %s" % (r.returncode, r.stderr[-2000:]))

    @classmethod
    def prepare(cls):
        cls.train(25)
        cls.wait_for_version(1)

    def predict(self, pid):
        full = self.get_json("/api/properties/%d" % pid)
        r = self.request("POST", "/api/ml/predict-price", full, token=None)
        self.assertEqual(r.status, 200, repr(r))
        return r.json["predicted_price"]

    def test_estimates_are_the_models(self):
        prefs = {"budget": 300000, "preferred_amenities": ["garage"], "limit": 20}
        items = self.recommend(prefs)["items"]
        self.assertEqual(len(items), 20)
        self.assert_ranked(items)
        for it in items:
            self.assertIsNotNone(it["predicted_price"])
            self.assert_item_consistent(it, prefs)
        for it in items[:5]:
            self.assertEqual(it["predicted_price"], self.predict(it["property"]["id"]),
                             "the estimate is the model's for the full listing")

    def test_value_ranks_a_bargain_first(self):
        tag = "Quillfield"
        source = [p for p in self.fetch_all("location=ames") if p["source"] == "ames"][0]
        base = self.get_json("/api/properties/%d" % source["id"])
        twin = {k: base[k] for k in ("bedrooms", "bathrooms", "size_sqft", "lot_size_sqft", "year_built", "latitude",
                                     "longitude", "features", "state")}
        twin.update(location="5 Value Way, %s, IA" % tag, city="Ames", amenities=["garage"])
        fair = self.request("POST", "/api/properties", valid_property(title="Fair", price=base["price"], **twin)).json
        estimate = Decimal(str(self.predict(fair["id"])))
        cheap_price = (estimate * Decimal("0.85")).quantize(Decimal("0.01"))
        dear_price = (estimate * Decimal("1.15")).quantize(Decimal("0.01"))
        self.request("PATCH", "/api/properties/%d" % fair["id"], {"price": float(estimate)})
        cheap = self.request("POST", "/api/properties", valid_property(title="Bargain", price=float(cheap_price), **twin)).json
        dear = self.request("POST", "/api/properties", valid_property(title="Dear", price=float(dear_price), **twin)).json
        items = self.recommend({"location": tag, "limit": 10})["items"]
        self.assertEqual([i["property"]["id"] for i in items], [cheap["id"], fair["id"], dear["id"]])
        self.assertIn("priced 15% below its estimated value", " ".join(items[0]["reasons"]))
        self.assertIn("priced 15% above its estimated value", " ".join(items[2]["reasons"]))
        self.assertEqual(items[1]["breakdown"]["value"], 0.5)
        for it in items:
            self.assert_item_consistent(it, {"location": tag})

    def test_estimate_follows_a_changed_listing(self):
        tag = "Wrenhollow"
        source = [p for p in self.fetch_all("location=ames") if p["source"] == "ames"][1]
        base = self.get_json("/api/properties/%d" % source["id"])
        body = {k: base[k] for k in ("bedrooms", "bathrooms", "size_sqft", "lot_size_sqft", "year_built", "latitude",
                                     "longitude", "features", "state")}
        body.update(location="7 Change St, %s, IA" % tag, city="Ames")
        home = self.request("POST", "/api/properties", valid_property(title="Changing", price=base["price"], **body)).json
        first = self.recommend({"location": tag})["items"][0]
        self.assertEqual(first["predicted_price"], self.predict(home["id"]))
        # without its source row the listing is priced by the model of listing fields alone
        r = self.request("PATCH", "/api/properties/%d" % home["id"], {"features": None, "size_sqft": base["size_sqft"] * 2})
        self.assertEqual(r.status, 200, repr(r))
        second = self.recommend({"location": tag})["items"][0]
        self.assertEqual(second["predicted_price"], self.predict(home["id"]), "the estimate of the changed listing")
        self.assertNotEqual(second["predicted_price"], first["predicted_price"])
        self.assert_item_consistent(second, {"location": tag})

    def test_a_new_model_version_changes_the_answer_at_once(self):
        prefs = {"budget": 250000, "min_bedrooms": 3, "limit": 5}
        before = self.recommend(prefs)["items"]
        self.train(10, "--activate")  # other rounds: other estimates
        self.wait_for_version(2)
        after = self.recommend(prefs)["items"]
        self.assertNotEqual([i["predicted_price"] for i in before], [i["predicted_price"] for i in after])
        for it in after:
            self.assertEqual(it["predicted_price"], self.predict(it["property"]["id"]))
            self.assert_item_consistent(it, prefs)


if __name__ == "__main__":
    import unittest
    unittest.main()
