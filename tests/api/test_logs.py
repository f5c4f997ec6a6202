"""The access log: one JSON object a line per request, and never a credential: tokens sent in the
query (as WebSocket and event-stream clients may) are replaced, and the Authorization header is
never logged."""
import json
import time

import harness
from harness import ServerTestCase


class AccessLogTest(ServerTestCase):
    ENV = {"HEARTH_LOG_LEVEL": "info"}

    def log_lines(self):
        deadline = time.monotonic() + 5
        while True:
            with open(self.server.log_path, "rb") as f:
                lines = [json.loads(l) for l in f.read().decode("utf-8", "replace").splitlines() if l.startswith("{")]
            if any(l.get("msg") == "request" and "marker" in l.get("path", "") for l in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def test_tokens_in_the_query_are_redacted(self):
        token = self.server.admin_token()
        refresh = self.server.login(harness.ADMIN_EMAIL, harness.ADMIN_PASSWORD)["refresh_token"]
        self.request("GET", "/api/properties?limit=1&access_token=%s&refresh_token=%s&marker=1" % (token, refresh))
        self.request("GET", "/api/me", token=token)
        lines = self.log_lines()
        requests = [l for l in lines if l.get("msg") == "request"]
        self.assertTrue(requests)
        text = "\n".join(json.dumps(l) for l in lines)
        self.assertNotIn(token, text)
        self.assertNotIn(refresh, text)
        marked = [l for l in requests if "marker=1" in l["path"]]
        self.assertEqual(len(marked), 1, requests)
        self.assertIn("access_token=REDACTED", marked[0]["path"])
        self.assertIn("refresh_token=REDACTED", marked[0]["path"])
        self.assertIn("limit=1", marked[0]["path"])


if __name__ == "__main__":
    harness.main()
