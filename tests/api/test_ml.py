"""The price model: `hearth train` prints each market's cross-validated metrics and the same seed
gives the same model; POST /api/ml/predict-price (single and batch) with its interval and its
validation errors; GET /api/ml/model-info; versions listed, switched with `hearth model activate`
and picked up by a running server without a restart; 503 before any model exists.
Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL. Training is turned down
(HEARTH_MODEL_ROUNDS) to keep the suite fast: the accuracy target is bench/ml.sh's."""
import os
import re
import time
import unittest

import harness
from harness import ServerTestCase, RFC3339_UTC_RE

ROUNDS = {"HEARTH_MODEL_ROUNDS": "25"}
HOUSE = {"size_sqft": 1500, "bedrooms": 3, "bathrooms": 2, "year_built": 1995}


def train(data_dir, *args):
    r = harness.run_cli(["train"] + list(args), data_dir, ROUNDS, timeout=120)
    if r.returncode != 0:
        raise AssertionError("hearth train %s exited %d: %s" % (args, r.returncode, r.stderr[-2000:]))
    return r


class NoModelTest(ServerTestCase):
    LOAD_DATA = True

    def test_predict_without_a_model_is_503(self):
        r = self.request("POST", "/api/ml/predict-price", HOUSE, token=None)
        self.assert_error(r, 503, "unavailable")

    def test_model_info_without_a_model_is_503(self):
        self.assert_error(self.request("GET", "/api/ml/model-info", token=None), 503, "unavailable")

    def test_validation_comes_before_the_model(self):
        r = self.request("POST", "/api/ml/predict-price", {"bedrooms": 3, "bathrooms": 2}, token=None)
        self.assert_error(r, 422, "validation_failed", field="size_sqft")


class ModelTest(ServerTestCase):
    LOAD_DATA = True
    ENV = ROUNDS

    @classmethod
    def prepare(cls):
        cls.trained = train(cls.server.data_dir)
        deadline = time.time() + 10
        while time.time() < deadline:  # the server looks for a new active version once a second
            if cls.server.request("GET", "/api/ml/model-info", token=None).status == 200:
                return
            time.sleep(0.1)
        raise AssertionError("the trained model was not picked up by the running server")

    def info(self):
        return self.get_json("/api/ml/model-info")

    def test_train_prints_cross_validated_metrics_per_market(self):
        out = self.trained.stdout
        self.assertRegex(out, r"model version \d+ \(5-fold cross-validation, seed 42\)")
        for market in ("ames", "sacramento"):
            m = re.search(r"^%s\s+rows\s+(\d+)\s+rmsle ([\d.]+)\s+rmse\s+([\d.]+)\s+mae\s+([\d.]+)\s+r2 (-?[\d.]+)$"
                          % market, out, re.M)
            self.assertIsNotNone(m, "no metrics line for %s in %r" % (market, out))
            self.assertEqual(int(m.group(1)), 40)
            self.assertGreater(float(m.group(2)), 0)

    def test_model_info_shape(self):
        info = self.info()
        for k in ("version", "trained_at", "rows", "metrics", "features", "feature_importance", "markets"):
            self.assertIn(k, info)
        self.assertRegex(info["trained_at"], RFC3339_UTC_RE)
        self.assertEqual(info["rows"], 40)
        self.assertEqual(set(info["metrics"]), {"rmse", "mae", "r2", "rmsle"})
        self.assertIn("size_sqft", info["features"])
        self.assertIn("Neighborhood", info["features"])  # an Ames source column
        self.assertIsInstance(info["feature_importance"], dict)
        self.assertAlmostEqual(sum(info["feature_importance"].values()), 1.0, delta=0.01)
        self.assertEqual(set(info["markets"]), {"ames", "sacramento"})
        self.assertEqual(info["markets"]["ames"]["metrics"], info["metrics"])
        neigh = [f for f in info["markets"]["ames"]["features"] if f["name"] == "Neighborhood"][0]
        self.assertEqual(neigh["type"], "categorical")
        self.assertTrue(neigh["categories"] == sorted(neigh["categories"]))

    def test_predict_one(self):
        r = self.request("POST", "/api/ml/predict-price", HOUSE, token=None)
        self.assertEqual(r.status, 200, repr(r))
        d = r.json
        self.assertEqual(set(d), {"predicted_price", "model_version", "market", "interval"})
        self.assertEqual(d["market"], "ames")
        self.assertEqual(d["model_version"], self.info()["version"])
        self.assertGreater(d["predicted_price"], 10000)
        self.assertLessEqual(d["interval"]["low"], d["predicted_price"])
        self.assertGreaterEqual(d["interval"]["high"], d["predicted_price"])
        self.assertEqual(round(d["predicted_price"], 2), d["predicted_price"])  # money: 2 decimals

    def test_predict_with_source_features_and_market(self):
        body = dict(HOUSE, market="ames", features={"Neighborhood": "North_Ames", "Garage_Cars": 2})
        r = self.request("POST", "/api/ml/predict-price", body, token=None)
        self.assertEqual(r.status, 200, repr(r))
        ca = self.request("POST", "/api/ml/predict-price", dict(HOUSE, state="CA"), token=None)
        self.assertEqual(ca.json["market"], "sacramento")
        again = self.request("POST", "/api/ml/predict-price", body, token=None)
        self.assertEqual(again.json, r.json)  # deterministic

    def test_batch(self):
        items = [HOUSE, dict(HOUSE, size_sqft=2500), dict(HOUSE, market="sacramento")]
        r = self.request("POST", "/api/ml/predict-price", {"items": items}, token=None)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(len(r.json["items"]), 3)
        one = self.request("POST", "/api/ml/predict-price", HOUSE, token=None).json
        self.assertEqual(r.json["items"][0], one)
        self.assertEqual(r.json["items"][2]["market"], "sacramento")
        big = self.request("POST", "/api/ml/predict-price", {"items": [HOUSE] * 1000}, token=None)
        self.assertEqual(big.status, 200)
        self.assertEqual(len(big.json["items"]), 1000)

    def test_batch_errors(self):
        for body, field in (({"items": []}, "items"), ({"items": [HOUSE] * 1001}, "items"),
                            ({"items": "x"}, "items"), ({"items": [HOUSE], "extra": 1}, "items"),
                            ({"items": [HOUSE, {"bedrooms": 2}]}, "items[1].size_sqft"),
                            ({"items": [HOUSE, 7]}, "items[1].")):
            r = self.request("POST", "/api/ml/predict-price", body, token=None)
            self.assert_error(r, 422, "validation_failed", field=field)

    def test_validation_errors_name_the_field(self):
        cases = [
            ({"bedrooms": 3, "bathrooms": 2}, "size_sqft"),
            ({"size_sqft": 1500, "bathrooms": 2}, "bedrooms"),
            ({"size_sqft": 1500, "bedrooms": 3}, "bathrooms"),
            (dict(HOUSE, size_sqft=-5), "size_sqft"),
            (dict(HOUSE, size_sqft="big"), "size_sqft"),
            (dict(HOUSE, bedrooms=3.5), "bedrooms"),
            (dict(HOUSE, bedrooms=1000), "bedrooms"),
            (dict(HOUSE, year_built=1200), "year_built"),
            (dict(HOUSE, latitude=123), "latitude"),
            (dict(HOUSE, market="paris"), "market"),
            (dict(HOUSE, features="nope"), "features"),
            (dict(HOUSE, colour="red"), "colour"),
        ]
        for body, field in cases:
            r = self.request("POST", "/api/ml/predict-price", body, token=None)
            self.assert_error(r, 422, "validation_failed", field=field)

    def test_bad_bodies(self):
        r = self.request("POST", "/api/ml/predict-price", "{not json", headers={"Content-Type": "application/json"},
                         token=None)
        self.assert_error(r, 400, "bad_request")
        r = self.request("POST", "/api/ml/predict-price", [1, 2], token=None)
        self.assert_error(r, 422, "validation_failed")

    def test_same_seed_same_model_and_hot_reload(self):
        d = self.server.data_dir
        before = self.info()["version"]
        out = train(d).stdout  # not activated: the active version stays
        v = int(re.search(r"model version (\d+)", out).group(1))
        self.assertEqual(v, before + 1)
        models = os.path.join(d, "models")
        for f in ("ames.json", "sacramento.json", "ames-basic.json"):
            with open(os.path.join(models, "v%d" % before, f), "rb") as a, open(os.path.join(models, "v%d" % v, f), "rb") as b:
                self.assertEqual(a.read(), b.read(), "%s differs between two trainings with the same seed" % f)
        time.sleep(1.2)
        self.assertEqual(self.info()["version"], before)
        r = harness.run_cli(["model", "activate", str(v)], d)
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.time() + 5
        while time.time() < deadline and self.info()["version"] != v:
            time.sleep(0.1)
        self.assertEqual(self.info()["version"], v, "the running server did not load the activated version")
        listed = harness.run_cli(["model", "list"], d)
        self.assertEqual(listed.returncode, 0)
        self.assertRegex(listed.stdout, r'"version":%d,"trained_at":"[^"]+","active":true' % v)
        self.assertEqual(harness.run_cli(["model", "activate", "999"], d).returncode, 1)
        self.assertEqual(harness.run_cli(["model", "activate", "x"], d).returncode, 2)
        self.assertEqual(harness.run_cli(["train", "--rounds", "0"], d).returncode, 2)


class DemoTrainsTest(ServerTestCase):
    """`serve --demo` on an empty database loads the demo data and, with no model, queues a
    `train` job whose model the server then uses."""
    ARGS = ["--demo"]
    ENV = ROUNDS

    def test_demo_trains_a_model(self):
        deadline = time.time() + 90
        r = None
        while time.time() < deadline:
            r = self.request("GET", "/api/ml/model-info", token=None)
            if r.status == 200:
                break
            time.sleep(0.2)
        self.assertEqual(r.status, 200, "no model within 90 s of serve --demo: %r" % (r,))
        self.assertGreater(r.json["rows"], 1000)  # the demo's Ames rows
        listed = self.request("GET", "/api/jobs?type=train", token=self.server.admin_token())
        self.assertEqual(listed.status, 200, repr(listed))
        jobs = listed.json["items"]
        self.assertEqual(len(jobs), 1)
        self.assertEqual(jobs[0]["status"], "succeeded")
        self.assertEqual(jobs[0]["result"]["version"], r.json["version"])
        self.assertIn("ames", jobs[0]["result"]["markets"])


if __name__ == "__main__":
    unittest.main()
