"""GET /ws: the WebSocket handshake, subscriptions to property:ID, job:ID and jobs, events in order
and only to those who may see them, ping/pong, close codes (a message too big, a binary frame) and
the closing handshake. Across instances through Redis: test_redis.py."""
import json
import struct
import time

import harness
from harness import ServerTestCase
from wsclient import WS, TEXT, BINARY, CLOSE, PING, PONG


class WebSocketTest(ServerTestCase):
    LOAD_DATA = True
    ENV = {"HEARTH_TEST_JOBS": "1", "HEARTH_JOB_WORKERS": "1",
           "HEARTH_LOGIN_LIMITS": "account=1000/min:1000,address=10000/min:10000"}

    def ws(self, token=None, query=False):
        if token and query:
            return WS(self.server.port, "/ws?access_token=" + token)
        return WS(self.server.port, headers={"Authorization": "Bearer " + token} if token else None)

    def subscribe(self, w, channel, want="subscribed"):
        w.send({"action": "subscribe", "channel": channel})
        reply = w.recv_json()
        self.assertEqual(reply["type"], want, reply)
        return reply

    def enqueue(self, payload, type_="test.sleep", token=None):
        r = self.request("POST", "/api/jobs", body={"type": type_, "payload": payload}, token=token or self.server.admin_token())
        self.assertEqual(r.status, 202, r)
        return r.json["id"]

    def test_handshake(self):
        w = self.ws()
        try:
            self.assertEqual(w.status, 101)
            self.assertEqual(w.headers["upgrade"].lower(), "websocket")
            self.assertEqual(w.headers["sec-websocket-accept"], w.expected_accept())
        finally:
            w.close()
        bad = WS(self.server.port, version="8")
        self.assertEqual((bad.status, bad.headers.get("sec-websocket-version")), (426, "13"))
        bad.close()
        bad = WS(self.server.port, key="")
        self.assertEqual(bad.status, 400)
        bad.close()
        self.assert_error(self.request("GET", "/ws"), 400, "bad_request")
        bad = WS(self.server.port, "/ws?access_token=forged")
        self.assertEqual(bad.status, 401)
        bad.close()

    def test_job_events_in_order_for_the_owner_only(self):
        agent = self.server.user("agent")
        admin = self.server.admin_token()
        owner_ws, admin_ws, other_ws = self.ws(admin, query=True), self.ws(admin), self.ws(agent["access_token"])
        try:
            self.subscribe(admin_ws, "jobs")  # before the job exists: sees all of it
            jid = self.enqueue({"sleep_ms": 600})
            for w in (owner_ws, other_ws):
                self.subscribe(w, "job:%d" % jid)
            got = []
            while not got or got[-1]["type"] != "job_complete":
                got.append(owner_ws.recv_json())
            types = [e["type"] for e in got]
            self.assertIn("progress", types)
            self.assertEqual(types[-1], "job_complete")
            ids = [e["id"] for e in got]
            self.assertEqual(ids, sorted(set(ids)))
            for e in got:
                self.assertEqual(e["channel"], "job:%d" % jid)
            # the admin following every job saw the same events
            seen = []
            while not seen or seen[-1]["type"] != "job_complete":
                seen.append(admin_ws.recv_json())
            self.assertTrue(set(ids) <= {e["id"] for e in seen})
            # another agent subscribed to the admin's job gets nothing of it
            other_ws.sock.settimeout(0.5)
            with self.assertRaises(OSError):
                other_ws.recv(timeout=0.5)
        finally:
            for w in (owner_ws, admin_ws, other_ws):
                w.close()

    def test_who_may_subscribe_what(self):
        agent = self.server.user("agent")
        anonymous = self.ws()
        w = self.ws(agent["access_token"])
        try:
            self.subscribe(anonymous, "property:1")
            self.subscribe(anonymous, "job:1", want="error")
            self.subscribe(w, "jobs", want="error")
            self.subscribe(w, "house:1", want="error")
            w.send("not json")
            self.assertEqual(w.recv_json()["type"], "error")
            w.send({"action": "subscribe", "channel": "property:2"})
            self.assertEqual(w.recv_json()["type"], "subscribed")
            w.send({"action": "unsubscribe", "channel": "property:2"})
            self.assertEqual(w.recv_json()["type"], "unsubscribed")
        finally:
            anonymous.close()
            w.close()

    def test_property_events(self):
        pid = self.request("GET", "/api/properties?limit=1").json["items"][0]["id"]
        w = self.ws()
        try:
            self.subscribe(w, "property:%d" % pid)
            self.assertEqual(self.request("PATCH", "/api/properties/%d" % pid, body={"price": -1}).status, 422)
            self.assertEqual(self.request("PATCH", "/api/properties/%d" % pid, body={"title": "Live"}).status, 200)
            e = w.recv_json()
            self.assertEqual((e["type"], e["channel"], e["data"]["id"]), ("property_updated", "property:%d" % pid, pid))
        finally:
            w.close()

    def test_ping_and_closing(self):
        w = self.ws()
        try:
            w.send(b"are you there", opcode=PING)
            self.assertEqual(w.recv(), (PONG, b"are you there"))
            w.send(struct.pack("!H", 1000) + b"bye", opcode=CLOSE)
            op, payload = w.recv()
            self.assertEqual(op, CLOSE)
            self.assertEqual(struct.unpack("!H", payload[:2])[0], 1000)
            with self.assertRaises((EOFError, OSError)):
                w.recv(timeout=5)
        finally:
            w.close()

    def test_close_codes(self):
        w = self.ws()
        try:
            w.send(b"\x00\x01", opcode=BINARY)
            op, payload = w.recv()
            self.assertEqual((op, struct.unpack("!H", payload[:2])[0]), (CLOSE, 1003))
        finally:
            w.close()
        w = self.ws()
        try:
            w.send("x" * (64 * 1024 + 1))
            op, payload = w.recv()
            self.assertEqual((op, struct.unpack("!H", payload[:2])[0]), (CLOSE, 1009))
        finally:
            w.close()


if __name__ == "__main__":
    harness.main()
