"""A small RFC 6455 client for the tests (Python's standard library has none): the opening
handshake, masked frames out, frames in (ping, pong and close included)."""
import base64
import hashlib
import json
import os
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


class WS:
    def __init__(self, port, path="/ws", headers=None, key=None, version="13"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        head = "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" % path
        if version is not None:
            head += "Sec-WebSocket-Version: %s\r\n" % version
        if self.key:
            head += "Sec-WebSocket-Key: %s\r\n" % self.key
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}

    def expected_accept(self):
        return base64.b64encode(hashlib.sha1((self.key + GUID).encode()).digest()).decode()

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the connection closed")
        self.buf += data

    def _need(self, n):
        while len(self.buf) < n:
            self._more()

    def send(self, payload, opcode=TEXT):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self, timeout=10):
        """(opcode, payload bytes) of the next frame."""
        self.sock.settimeout(timeout)
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv_json(self, timeout=10):
        while True:
            op, payload = self.recv(timeout)
            if op == TEXT:
                return json.loads(payload)
            if op == CLOSE:
                raise EOFError("closed with %r" % payload)

    def close(self):
        self.sock.close()
