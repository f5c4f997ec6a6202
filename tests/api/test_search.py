"""Search: every filter filters, sorting, keyset cursors, pagination under concurrent inserts."""
import base64
import json
import threading
from decimal import Decimal
from urllib.parse import quote

import harness
from harness import ServerTestCase, valid_property

SORT_KEYS = ["price", "size_sqft", "bedrooms", "year_built", "created_at"]


def price_of(it):
    return Decimal(repr(it["price"])) if isinstance(it["price"], float) else Decimal(it["price"])


def parse_time(s):
    # RFC 3339 UTC -> (seconds part, fraction as Decimal) comparable regardless of digits
    main, _, frac = s.rstrip("Z").partition(".")
    return (main, Decimal("0." + frac) if frac else Decimal(0))


def sort_value(it, key):
    if key == "price":
        return price_of(it)
    if key == "created_at":
        return parse_time(it["created_at"])
    return it[key]


EXTRA = [
    dict(title="Quokka cottage", description="small and sunny", location="1 Plain St, Testville",
         city="Springfield", price=150000.50, school_rating=3, amenities=["pool", "garage"],
         property_type="condo", year_built=None, commute_time=10),
    dict(title="Plain house", description="has a QUOKKA statue", location="2 Plain St, Testville",
         city="SPRINGFIELD", price=150000.49, school_rating=7.5, amenities=["pool"],
         property_type="townhouse", commute_time=45),
    dict(title="Another plain house", description=None, location="3 Quokka Lane, Testville",
         city="springfield", price=150000.51, school_rating=9, amenities=["garage", "fireplace"],
         property_type="land", year_built=None),
    dict(title="Wombat place", location="77 Wombat Crescent, Testville", city="Shelbyville",
         price=99.99, amenities=["pool", "garage", "fireplace"], property_type="multi_family",
         status="pending", bedrooms=7, bathrooms=4.5, size_sqft=4200),
    dict(title="Sold one", location="5 Gone Rd", city="Shelbyville", price=500000,
         status="sold", amenities=[], property_type="other", school_rating=10),
    dict(title="Tie one", location="6 Tie Rd", price=222222.22, bedrooms=3, size_sqft=1222, year_built=1950),
    dict(title="Tie two", location="7 Tie Rd", price=222222.22, bedrooms=3, size_sqft=1222, year_built=1950),
    dict(title="Tie three", location="8 Tie Rd", price=222222.22, bedrooms=3, size_sqft=1222, year_built=1950),
]


class SearchTest(ServerTestCase):
    LOAD_DATA = True

    @classmethod
    def prepare(cls):
        cls.extra_ids = {}
        for e in EXTRA:
            body = valid_property(**{k: (Ellipsis if v is None else v) for k, v in e.items()})
            r = cls.server.request("POST", "/api/properties", body)
            if r.status != 201:
                raise AssertionError("could not create search fixture %r: %r" % (e["title"], r))
            cls.extra_ids[e["title"]] = r.json["id"]

    def all_items(self):
        if not hasattr(type(self), "_all"):
            type(self)._all = self.fetch_all()
        return type(self)._all

    def check_filter(self, query, pred, nontrivial=True):
        everything = self.all_items()
        got = self.fetch_all(query, limit=100)
        for it in got:
            self.assertTrue(pred(it), "%s returned a row that does not match: %r" % (query, it))
        expected = {it["id"] for it in everything if pred(it)}
        self.assertEqual({it["id"] for it in got}, expected, "filter %s" % query)
        if nontrivial:
            self.assertTrue(0 < len(expected) < len(everything),
                            "filter %s is not a useful test (%d of %d)" % (query, len(expected), len(everything)))
        # and with small pages
        small = self.fetch_all(query, limit=3)
        self.assertEqual([i["id"] for i in small], [i["id"] for i in got], "filter %s with limit=3" % query)
        return got

    # --- basics --------------------------------------------------------------------------------

    def test_fixture_data_loaded(self):
        items = self.all_items()
        self.assertGreaterEqual(len(items), 80 + len(EXTRA) - 2, "expected the 80 imported rows and fixtures")
        for it in items:
            self.assertIn(it["property_type"], ("single_family", "condo", "townhouse", "multi_family", "land", "other"))
            self.assertIsInstance(it["id"], int)

    def test_list_items_agree_with_single_get(self):
        for it in self.all_items()[:25]:
            one = self.get_json("/api/properties/%d" % it["id"])
            for k, v in it.items():
                self.assertEqual(v, one.get(k), "list item %d field %s differs from GET" % (it["id"], k))
            missing = set(one) - set(it)
            self.assertLessEqual(missing, {"features"}, "list items lack %r" % missing)

    def test_default_limit_and_shape(self):
        r = self.request("GET", "/api/properties")
        self.assertEqual(r.status, 200)
        self.assert_common_headers(r)
        self.assertEqual(set(r.json), {"items", "next_cursor"})
        self.assertEqual(len(r.json["items"]), 20)
        self.assertIsInstance(r.json["next_cursor"], str)

    def test_last_page_has_null_cursor(self):
        n = len(self.all_items())
        doc = self.get_json("/api/properties?limit=100&min_price=0.01")
        if n <= 100:
            self.assertIsNone(doc["next_cursor"])
        doc = self.get_json("/api/properties?q=quokka&limit=100")
        self.assertIsNone(doc["next_cursor"])

    def test_empty_result(self):
        doc = self.get_json("/api/properties?min_price=999999999")
        self.assertEqual(doc, {"items": [], "next_cursor": None})

    def test_pagination_visits_every_row_once(self):
        ref = [i["id"] for i in self.fetch_all(limit=100)]
        self.assertEqual(len(ref), len(set(ref)))
        for limit in (1, 7, 20, 33):
            ids = [i["id"] for i in self.fetch_all(limit=limit)]
            self.assertEqual(ids, ref, "limit=%d pages differ from limit=100" % limit)
        for key in ("price", "-year_built"):
            a = [i["id"] for i in self.fetch_all(limit=100, sort=key)]
            b = [i["id"] for i in self.fetch_all(limit=7, sort=key)]
            self.assertEqual(a, b, key)
            self.assertEqual(set(a), set(ref))

    # --- filters -------------------------------------------------------------------------------

    def test_min_max_price(self):
        prices = sorted(price_of(i) for i in self.all_items())
        mid = prices[len(prices) // 2]
        self.check_filter("min_price=%s" % mid, lambda i: price_of(i) >= mid)
        self.check_filter("max_price=%s" % mid, lambda i: price_of(i) <= mid)
        lo, hi = prices[len(prices) // 4], prices[3 * len(prices) // 4]
        self.check_filter("min_price=%s&max_price=%s" % (lo, hi), lambda i: lo <= price_of(i) <= hi)

    def test_price_decimal_boundaries(self):
        got = self.check_filter("min_price=150000.49&max_price=150000.51",
                                lambda i: Decimal("150000.49") <= price_of(i) <= Decimal("150000.51"))
        self.assertEqual(len(got), 3)
        got = self.check_filter("min_price=150000.50&max_price=150000.50",
                                lambda i: price_of(i) == Decimal("150000.50"))
        self.assertEqual([i["title"] for i in got], ["Quokka cottage"])
        got = self.check_filter("min_price=150000.5&max_price=150000.5",
                                lambda i: price_of(i) == Decimal("150000.50"))
        self.assertEqual(len(got), 1)

    def test_min_bedrooms_bathrooms(self):
        self.check_filter("min_bedrooms=4", lambda i: i["bedrooms"] >= 4)
        self.check_filter("min_bathrooms=2", lambda i: i["bathrooms"] >= 2)
        self.check_filter("min_bathrooms=1.5", lambda i: i["bathrooms"] >= 1.5)

    def test_size(self):
        sizes = sorted(i["size_sqft"] for i in self.all_items())
        mid = sizes[len(sizes) // 2]
        self.check_filter("min_size_sqft=%d" % mid, lambda i: i["size_sqft"] >= mid)
        self.check_filter("max_size_sqft=%d" % mid, lambda i: i["size_sqft"] <= mid)
        self.check_filter("min_size_sqft=%d&max_size_sqft=%d" % (sizes[10], sizes[-10]),
                          lambda i: sizes[10] <= i["size_sqft"] <= sizes[-10])

    def test_city_exact_case_insensitive(self):
        got = self.check_filter("city=springFIELD", lambda i: (i["city"] or "").lower() == "springfield")
        self.assertEqual(len(got), 3)
        self.check_filter("city=springfiel", lambda i: (i["city"] or "").lower() == "springfiel", nontrivial=False)
        self.assertEqual(self.fetch_all("city=springfiel"), [])
        # a city of the imported data, upper-cased
        cities = [i["city"] for i in self.all_items() if i["city"] and i["city"].lower() not in ("springfield", "shelbyville")]
        if cities:
            c = cities[0]
            self.check_filter("city=" + quote(c.upper()), lambda i: (i["city"] or "").lower() == c.lower())

    def test_location_substring(self):
        got = self.check_filter("location=" + quote("wOMBAT cres"),
                                lambda i: "wombat cres" in i["location"].lower())
        self.assertEqual(len(got), 1)
        self.check_filter("location=testville", lambda i: "testville" in i["location"].lower())
        locs = [i["location"] for i in self.all_items() if "testville" not in i["location"].lower() and len(i["location"]) > 6]
        if locs:
            sub = locs[0][2:6]
            self.check_filter("location=" + quote(sub.upper()), lambda i: sub.lower() in i["location"].lower())

    def test_location_like_wildcards_are_literal(self):
        self.assertEqual(self.fetch_all("location=%25"), [])  # "%" is not a wildcard
        self.assertEqual(self.fetch_all("location=_"), [])

    def test_property_type(self):
        self.check_filter("property_type=condo", lambda i: i["property_type"] == "condo")
        self.check_filter("property_type=condo,townhouse,land",
                          lambda i: i["property_type"] in ("condo", "townhouse", "land"))

    def test_amenities_all(self):
        got = self.check_filter("amenities=pool,garage",
                                lambda i: "pool" in i["amenities"] and "garage" in i["amenities"])
        ids = {i["id"] for i in got}
        self.assertIn(self.extra_ids["Quokka cottage"], ids)
        self.assertNotIn(self.extra_ids["Plain house"], ids)
        self.check_filter("amenities=fireplace", lambda i: "fireplace" in i["amenities"])

    def test_amenities_query_normalised(self):
        a = {i["id"] for i in self.fetch_all("amenities=pool,garage")}
        b = {i["id"] for i in self.fetch_all("amenities=" + quote("POOL, Garage"))}
        self.assertEqual(a, b)

    def test_max_commute_time(self):
        self.check_filter("max_commute_time=30",
                          lambda i: i["commute_time"] is not None and i["commute_time"] <= 30)

    def test_min_school_rating_excludes_null(self):
        got = self.check_filter("min_school_rating=5",
                                lambda i: i["school_rating"] is not None and i["school_rating"] >= 5)
        self.assertIn(self.extra_ids["Plain house"], {i["id"] for i in got})
        got = self.check_filter("min_school_rating=0", lambda i: i["school_rating"] is not None)
        self.assertGreaterEqual(len(got), 3)

    def test_full_text(self):
        want = {self.extra_ids[t] for t in ("Quokka cottage", "Plain house", "Another plain house")}
        for q in ("quokka", "QUOKKA", "Quokka"):
            got = self.fetch_all("q=" + q)
            self.assertEqual({i["id"] for i in got}, want, "q=%s" % q)
        got = self.fetch_all("q=" + quote("wombat crescent"))
        self.assertEqual([i["id"] for i in got], [self.extra_ids["Wombat place"]])
        self.assertEqual(self.fetch_all("q=zzxqnotaword"), [])

    def test_full_text_syntax_is_not_an_error(self):
        # user text must never reach FTS query syntax unescaped
        for q in ('"', "quokka OR", "NEAR(", "*", "a AND", "-", "(", "title:quokka", "'"):
            r = self.request("GET", "/api/properties?q=" + quote(q))
            self.assertEqual(r.status, 200, "q=%r -> %r" % (q, r))

    def test_status(self):
        got = self.fetch_all("status=pending")
        self.assertTrue(got)
        for i in got:
            self.assertEqual(i["status"], "pending")
        self.assertIn(self.extra_ids["Wombat place"], {i["id"] for i in got})
        got = self.fetch_all("status=sold")
        self.assertEqual([i["status"] for i in got], ["sold"] * len(got))
        self.assertIn(self.extra_ids["Sold one"], {i["id"] for i in got})

    def test_filters_combined(self):
        self.check_filter("amenities=pool&city=springfield&min_school_rating=5",
                          lambda i: "pool" in i["amenities"] and (i["city"] or "").lower() == "springfield"
                          and i["school_rating"] is not None and i["school_rating"] >= 5)

    # --- sorting -------------------------------------------------------------------------------

    def check_sorted(self, items, key, desc):
        nonnull = [i for i in items if i[key] is not None]
        nulls = [i for i in items if i[key] is None]
        if key == "year_built":
            self.assertEqual(items[len(nonnull):], nulls, "null year_built must sort last (%s)" % ("desc" if desc else "asc"))
        else:
            self.assertEqual(nulls, [])
        tie_dir = None
        for a, b in zip(items, items[1:]):
            va, vb = a[key], b[key]
            if va is None or vb is None:
                continue
            va, vb = sort_value(a, key), sort_value(b, key)
            if va == vb:
                d = a["id"] < b["id"]
                self.assertNotEqual(a["id"], b["id"])
                if tie_dir is None:
                    tie_dir = d
                self.assertEqual(d, tie_dir, "ties on %s not broken consistently by id" % key)
            elif desc:
                self.assertGreater(va, vb, "sort=-%s out of order: %r before %r" % (key, a["id"], b["id"]))
            else:
                self.assertLess(va, vb, "sort=%s out of order: %r before %r" % (key, a["id"], b["id"]))
        nulls_ids = [i["id"] for i in nulls]
        if len(nulls_ids) > 1:
            asc = nulls_ids == sorted(nulls_ids)
            dsc = nulls_ids == sorted(nulls_ids, reverse=True)
            self.assertTrue(asc or dsc, "rows with null %s not ordered by id" % key)

    def test_sorts(self):
        n = len(self.all_items())
        for key in SORT_KEYS:
            for desc in (False, True):
                s = ("-" if desc else "") + key
                with self.subTest(sort=s):
                    items = self.fetch_all(limit=9, sort=s)
                    self.assertEqual(len(items), n)
                    self.check_sorted(items, key, desc)

    def test_default_sort_is_newest_first(self):
        a = [i["id"] for i in self.fetch_all(limit=100)]
        b = [i["id"] for i in self.fetch_all(limit=100, sort="-created_at")]
        self.assertEqual(a, b)
        items = self.fetch_all(limit=100)
        self.check_sorted(items, "created_at", True)
        # the fixtures created last come first
        self.assertEqual(items[0]["id"], self.extra_ids["Tie three"])

    def test_ties_broken_by_id(self):
        ties = sorted(self.extra_ids["Tie " + t] for t in ("one", "two", "three"))
        for s in ("price", "-price", "size_sqft", "-size_sqft"):
            for limit in (1, 2, 100):
                got = [i["id"] for i in self.fetch_all("min_price=222222.22&max_price=222222.22", limit=limit, sort=s)]
                self.assertEqual(sorted(got), ties)
                self.assertIn(got, (ties, ties[::-1]), "sort=%s limit=%d" % (s, limit))

    def test_sort_with_filter_and_pages(self):
        full = [i for i in self.fetch_all(limit=100, sort="-price") if i["bedrooms"] >= 3]
        got = self.fetch_all("min_bedrooms=3", limit=4, sort="-price")
        self.assertEqual([i["id"] for i in got], [i["id"] for i in full])

    # --- errors --------------------------------------------------------------------------------

    def test_bad_parameters(self):
        cases = [
            ("limit=0", 422, "validation_failed"),
            ("limit=101", 422, "validation_failed"),
            ("limit=500", 422, "validation_failed"),
            ("limit=-1", 422, "validation_failed"),
            ("limit=abc", 400, "bad_request"),
            ("limit=10abc", 400, "bad_request"),
            ("limit=", 400, "bad_request"),
            ("sort=bogus", 422, "validation_failed"),
            ("sort=--price", 422, "validation_failed"),
            ("sort=title", 422, "validation_failed"),
            ("property_type=castle", 422, "validation_failed"),
            ("property_type=condo,castle", 422, "validation_failed"),
            ("status=bogus", 422, "validation_failed"),
            ("min_price=abc", 400, "bad_request"),
            ("min_price=1.005", 422, "validation_failed"),
            ("max_price=10.001", 422, "validation_failed"),
            ("max_price=1e", 400, "bad_request"),
            ("min_bedrooms=three", 400, "bad_request"),
            ("min_bathrooms=x", 400, "bad_request"),
            ("max_size_sqft=1.2.3", 400, "bad_request"),
            ("min_school_rating=abc", 400, "bad_request"),
            ("max_commute_time=soon", 400, "bad_request"),
            ("q=%zz", 400, "bad_request"),
            ("city=%", 400, "bad_request"),
            ("city=ab%4", 400, "bad_request"),
        ]
        for qs, status, code in cases:
            with self.subTest(qs=qs):
                r = self.request("GET", "/api/properties?" + qs)
                self.assert_error(r, status, code)

    def test_boundary_limits_ok(self):
        self.assertEqual(len(self.get_json("/api/properties?limit=1")["items"]), 1)
        self.assertLessEqual(len(self.get_json("/api/properties?limit=100")["items"]), 100)

    def test_cursor_garbage(self):
        for c in ("garbage", "!!!", "AAAA", "eyJ4IjoxfQ", base64.urlsafe_b64encode(b"\x00" * 40).decode(),
                  "a" * 500, base64.urlsafe_b64encode(json.dumps({"v": 1, "id": 1}).encode()).decode()):
            with self.subTest(cursor=c):
                r = self.request("GET", "/api/properties?cursor=" + quote(c))
                self.assert_error(r, 400, "bad_request")

    def test_cursor_with_different_sort(self):
        doc = self.get_json("/api/properties?limit=5&sort=price")
        cur = quote(doc["next_cursor"])
        self.assertEqual(self.request("GET", "/api/properties?limit=5&sort=price&cursor=" + cur).status, 200)
        for other in ("-price", "size_sqft", "created_at", None):
            path = "/api/properties?limit=5&cursor=" + cur + ("&sort=" + other if other else "")
            with self.subTest(sort=other):
                self.assert_error(self.request("GET", path), 400, "bad_request")

    def test_cursor_tampered(self):
        doc = self.get_json("/api/properties?limit=5&sort=price")
        c = doc["next_cursor"]
        for t in (c[:-1], c[:len(c) // 2], c + "x", c[::-1]):
            if t == c:
                continue
            r = self.request("GET", "/api/properties?limit=5&sort=price&cursor=" + quote(t))
            # either rejected as bad, or (if it happens to decode) a valid page: never a 500
            self.assertIn(r.status, (200, 400), "tampered cursor %r -> %r" % (t, r))
            if r.status == 400:
                self.assert_error(r, 400, "bad_request")


class ConcurrentPagingTest(ServerTestCase):
    LOAD_DATA = True

    def page_while_inserting(self, sort):
        before = {i["id"] for i in self.fetch_all(limit=100)}
        self.assertGreaterEqual(len(before), 40)
        stop = threading.Event()
        errors = []
        created = []

        def writer():
            n = 0
            while not stop.is_set() and n < 300:
                n += 1
                body = valid_property(title="Concurrent %d" % n, price=1000 + (n * 7919) % 900000,
                                      size_sqft=300 + (n * 31) % 4000, bedrooms=n % 7,
                                      year_built=None if n % 3 == 0 else 1900 + n % 120)
                try:
                    r = self.server.request("POST", "/api/properties", body)
                    if r.status != 201:
                        errors.append(repr(r))
                        return
                    created.append(r.json["id"])
                except Exception as e:  # noqa
                    errors.append(repr(e))
                    return

        t = threading.Thread(target=writer)
        t.start()
        try:
            seen = []
            cursor = None
            while True:
                path = "/api/properties?limit=7" + ("&sort=" + sort if sort else "")
                if cursor:
                    path += "&cursor=" + quote(cursor)
                r = self.request("GET", path)
                self.assertEqual(r.status, 200, repr(r))
                seen.extend(i["id"] for i in r.json["items"])
                cursor = r.json["next_cursor"]
                if cursor is None:
                    break
                self.assertLess(len(seen), 5000)
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])
        self.assertTrue(created, "the writer created nothing while paging")
        dup = {i for i in seen if seen.count(i) > 1}
        self.assertEqual(dup, set(), "rows repeated while paging with sort=%s" % sort)
        missing = before - set(seen)
        self.assertEqual(missing, set(), "rows that existed before paging were skipped (sort=%s)" % sort)

    def test_default_sort(self):
        self.page_while_inserting(None)

    def test_price_sort(self):
        self.page_while_inserting("price")

    def test_year_built_desc(self):
        self.page_while_inserting("-year_built")


if __name__ == "__main__":
    harness.main()
