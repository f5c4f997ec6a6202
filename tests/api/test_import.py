"""`hearth import`: CSV and JSON rows land as properties, re-imports upsert by (source, external_id)."""
import json
import os
import re
import shutil
import tempfile
import unittest
from decimal import Decimal

import harness
from harness import Server, run_cli, FIXTURES


class ImportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-import-")
        self.srv = None

    def tearDown(self):
        if self.srv:
            self.srv.kill()
            try:
                self.srv.log.close()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self):
        if self.srv:
            self.srv.kill()
            self.srv.log.close()
        self.srv = Server(data_dir=self.dir)
        self.srv.start()
        return self.srv

    def all_items(self):
        out, cursor = [], None
        while True:
            path = "/api/properties?limit=100" + ("&cursor=" + harness.urlquote(cursor) if cursor else "")
            r = self.srv.request("GET", path)
            self.assertEqual(r.status, 200)
            out.extend(json.loads(r.raw, parse_float=Decimal)["items"])
            cursor = r.json["next_cursor"]
            if not cursor:
                return out

    def test_json_import(self):
        r = run_cli(["import", os.path.join(FIXTURES, "properties.json"), "--format", "json"], self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.serve()
        items = {i["external_id"]: i for i in self.all_items()}
        self.assertEqual(set(items), {"fx-1", "fx-2", "fx-3", "fx-4", "fx-5"}, "the invalid row must be rejected")
        self.assertEqual(items["fx-2"]["price"], Decimal("349500.5"))
        self.assertEqual(items["fx-1"]["price"], Decimal("289000"))
        self.assertEqual(sorted(items["fx-1"]["amenities"]), ["central_air", "pool"])
        one = self.srv.request("GET", "/api/properties/%d" % items["fx-1"]["id"]).json
        self.assertEqual(one["features"], {"hoa_monthly": 310})
        self.assertEqual(items["fx-1"]["bathrooms"], Decimal("1.5"))
        self.assertEqual(items["fx-3"]["source"], "agent-feed")
        self.assertEqual(items["fx-3"]["status"], "pending")
        self.assertEqual(items["fx-3"]["property_type"], "townhouse")
        self.assertEqual(items["fx-2"]["commute_time"], 9)
        self.assertIsNone(items["fx-4"]["school_rating"])
        self.assertEqual(items["fx-5"]["status"], "active")
        for i in items.values():
            self.assertIsNotNone(i["source"])
            self.assertEqual(i["version"], 1)

    def test_json_reimport_upserts(self):
        src = os.path.join(FIXTURES, "properties.json")
        self.assertEqual(run_cli(["import", src, "--format", "json"], self.dir).returncode, 0)
        self.serve()
        before = {i["external_id"]: i for i in self.all_items()}
        self.assertEqual(self.srv.stop(), 0)
        with open(src) as f:
            rows = json.load(f)
        for row in rows:
            if row["external_id"] == "fx-5":
                row["price"] = 199000.25
                row["title"] = "One-bed cottage, price cut"
        changed = os.path.join(self.dir, "changed.json")
        with open(changed, "w") as f:
            json.dump(rows, f)
        r = run_cli(["import", changed, "--format", "json"], self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.serve()
        after = {i["external_id"]: i for i in self.all_items()}
        self.assertEqual(set(after), set(before))
        for k in before:
            self.assertEqual(after[k]["id"], before[k]["id"], "re-import changed the id of %s" % k)
        self.assertEqual(after["fx-5"]["price"], Decimal("199000.25"))
        self.assertEqual(after["fx-5"]["title"], "One-bed cottage, price cut")
        self.assertGreater(after["fx-5"]["version"], before["fx-5"]["version"])
        self.assertEqual(after["fx-1"]["version"], before["fx-1"]["version"], "an unchanged row was rewritten")
        self.assertEqual(after["fx-1"]["updated_at"], before["fx-1"]["updated_at"])

    def test_csv_imports(self):
        harness.import_fixtures(self.dir)
        self.serve()
        items = self.all_items()
        self.assertEqual(len(items), 80)
        for i in items:
            self.assertGreater(i["price"], 0)
            self.assertGreater(i["size_sqft"], 0)
            self.assertTrue(i["title"])
            self.assertTrue(i["location"])
            self.assertIn(i["property_type"], ("single_family", "condo", "townhouse", "multi_family", "land", "other"))
            for a in i["amenities"]:
                self.assertRegex(a, r"^[a-z0-9_]+$")
            self.assertIsNone(i["school_rating"], "the data has no school ratings; they must stay null")
            self.assertEqual(i["bathrooms"] * 2, int(i["bathrooms"] * 2))
        sources = {i["source"] for i in items}
        self.assertEqual(len(sources), 2, sources)
        sac = [i for i in items if i["city"] and i["city"].lower() == "sacramento"]
        self.assertTrue(sac, "Sacramento rows should have city Sacramento")
        for i in sac:
            self.assertRegex(i["zip"] or "", r"^\d{5}$", "zip should be the 5 digits, not %r" % i["zip"])

    def test_import_unreadable_json(self):
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('[{"title": ')
        r = run_cli(["import", bad, "--format", "json"], self.dir)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue((r.stdout + r.stderr).strip())


if __name__ == "__main__":
    harness.main()
