"""Listing photos: upload (multipart, taken in as a stream), refusals that leave nothing behind,
the processing job (variants without metadata, features), near-duplicates across listings,
similarity search (by an image of the store, by an uploaded one, with listing filters), content
URLs, deletion and the reference-counted originals, `hearth objects gc`. Fixtures:
tests/fixtures/upload/ (two photos of ../shared/data/photos, scikit-image's public-domain
samples). ImagesTest runs on the filesystem store; ImagesS3Test, the same tests on the S3 backend
against the S3 protocol server of scripts/services.sh (HEARTH_TEST_S3, the PostgreSQL pass of
make test), in a bucket of its own."""
import hashlib
import os
import re
import struct
import time
import unittest
import urllib.error
import urllib.request
import uuid
import zlib

import harness
from harness import ServerTestCase, valid_property

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "upload")


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def multipart(files, fields=None):
    b = "hearth-" + uuid.uuid4().hex
    out = b""
    for k, v in (fields or {}).items():
        out += b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b.encode(), k.encode(), v.encode())
    for name, filename, data in files:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n" % (b.encode(), name.encode(), filename.encode()))
        out += data + b"\r\n"
    out += b"--%s--\r\n" % b.encode()
    return out, "multipart/form-data; boundary=" + b


def png_header_only(width, height):
    """A PNG whose IHDR claims width x height, with no pixels worth decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 64)
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        seg = struct.unpack(">H", data[i + 2:i + 4])[0]
        i += 2 + seg
    return None


class ImagesTest(ServerTestCase):
    ENV = {"HEARTH_JOB_WORKERS": "2"}

    @classmethod
    def prepare(cls):
        cls.agent = cls.server.user("agent")
        cls.other = cls.server.user("agent")
        cls.buyer = cls.server.user("buyer")

    def listing(self, token=None, **over):
        r = self.request("POST", "/api/properties", body=valid_property(**over), token=token or self.agent["access_token"])
        self.assertEqual(r.status, 201, r)
        return r.json["id"]

    def upload(self, pid, data, name="photo", token=None, status=202):
        body, ctype = multipart([("file", name, data)])
        r = self.request("POST", "/api/properties/%d/images" % pid, body=body, headers={"Content-Type": ctype},
                         token=token or self.agent["access_token"])
        self.assertEqual(r.status, status, r)
        return r

    def wait(self, iid, bound=60):
        deadline = time.monotonic() + bound
        while True:
            r = self.request("GET", "/api/images/%d" % iid, token=self.agent["access_token"])
            self.assertEqual(r.status, 200, r)
            if r.json["status"] != "queued":
                return r.json
            self.assertLess(time.monotonic(), deadline, "image %d stayed queued" % iid)
            time.sleep(0.05)

    def stored(self, prefix=""):
        """Every object key of the store that starts with `prefix` (filesystem backend)."""
        root = os.path.join(self.server.data_dir, "objects")
        out = []
        for d, _, files in os.walk(root):
            for f in files:
                rel = os.path.relpath(os.path.join(d, f), root)
                if rel.startswith(prefix) and not f.startswith("~"):
                    out.append(rel)
        return sorted(out)

    def plant(self, key, data):
        """Puts an object behind hearth's back (an orphan)."""
        path = os.path.join(self.server.data_dir, "objects", key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def content(self, url, token=None):
        """(status, content type, bytes) of a content URL (following S3's redirect)."""
        r = self.request("GET", url, token=token)
        return r.status, r.headers.get("content-type"), r.raw

    def temp_files(self):
        d = os.path.join(self.server.data_dir, "tmp")
        return os.listdir(d) if os.path.isdir(d) else []

    def wait_jobs(self, bound=30):
        deadline = time.monotonic() + bound
        while (self.server.metric('hearth_jobs_waiting{queue="default"}') or
               self.server.metric('hearth_jobs_running{queue="default"}')):
            self.assertLess(time.monotonic(), deadline, "jobs did not finish")
            time.sleep(0.05)

    def test_upload_processes_into_variants_without_metadata(self):
        pid = self.listing()
        data = fixture("rocket.jpg")
        r = self.upload(pid, data, "rocket.jpg")
        self.assertEqual(r.headers["location"], "/api/images/%d" % r.json["image"]["id"])
        img, job = r.json["image"], r.json["job"]
        self.assertEqual((img["status"], img["content_type"], img["size_bytes"], img["property_id"]),
                         ("queued", "image/jpeg", len(data), pid))
        self.assertEqual(img["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual((job["type"], job["status"]), ("image.process", "queued"))
        done = self.wait(img["id"])
        self.assertEqual(done["status"], "ready", done)
        self.assertEqual((done["width"], done["height"]), (640, 427))
        self.assertRegex(done["phash"], "^[0-9a-f]{16}$")
        self.assertTrue(done["colors"] and all(c.startswith("#") for c in done["colors"]))
        self.assertIn("landscape", done["labels"])
        self.assertEqual(set(done["quality"]), {"brightness", "sharpness", "too_dark", "blurry"})
        for d in done["duplicates"]:  # only the same photo, uploaded by other tests
            self.assertEqual((d["distance"], d["similarity"]), (0, 1), d)
        for variant, longest in (("thumb", 320), ("medium", 640)):
            status, ctype, body = self.content(done["urls"][variant])
            self.assertEqual((status, ctype), (200, "image/jpeg"), variant)
            self.assertEqual(max(jpeg_size(body)), longest, variant)
            self.assertNotIn(b"Exif", body[:4096])
        status, _, body = self.content(done["urls"]["original"])
        self.assertEqual(status, 200)
        self.assertEqual(jpeg_size(body), (640, 427))
        self.assertNotIn(b"Exif", body[:65536])
        head = self.request("HEAD", done["urls"]["original"], token=None)
        if head.status == 200:  # the filesystem store sends the file itself, in pieces
            self.assertEqual((int(head.headers["content-length"]), head.raw), (len(body), b""))
        big = self.request("GET", "/api/images/%d/content?variant=raw" % img["id"], token=self.agent["access_token"])
        if big.status == 200:
            self.assertEqual(big.raw, data)  # two pieces of 64 KiB and the rest
        status, _, body = self.content("/api/images/%d/content?variant=raw" % img["id"], token=self.agent["access_token"])
        self.assertEqual(hashlib.sha256(body).hexdigest(), img["sha256"])
        self.assert_error(self.request("GET", "/api/images/%d/content?variant=raw" % img["id"], token=self.buyer["access_token"]),
                          403, "forbidden")
        self.assert_error(self.request("GET", "/api/images/%d/content?variant=huge" % img["id"], token=None),
                          422, "validation_failed", field="variant")
        # the listing's image_urls are its processed images'
        prop = self.request("GET", "/api/properties/%d" % pid, token=None).json
        self.assertEqual(prop["image_urls"], ["/api/images/%d/content?variant=medium" % img["id"]])
        listed = self.request("GET", "/api/properties/%d/images" % pid, token=None).json
        self.assertEqual([i["id"] for i in listed["items"]], [img["id"]])
        self.assertEqual(self.temp_files(), [])

    def test_refusals_leave_nothing_behind(self):
        pid = self.listing()
        before = self.stored()
        cases = [
            (multipart([("file", "x.gif", b"GIF89a" + b"\0" * 200)]), 415, "unsupported_media_type", None),
            (multipart([("file", "big.png", png_header_only(10000, 6000))]), 422, "validation_failed", None),
            (multipart([("file", "bad.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 300)]), 422, "validation_failed", None),
            (multipart([], {"note": "no file"}), 422, "validation_failed", "file"),
            (multipart([("file", "empty.png", b"")]), 422, "validation_failed", "file"),
        ]
        for (body, ctype), status, code, field in cases:
            r = self.request("POST", "/api/properties/%d/images" % pid, body=body, headers={"Content-Type": ctype},
                             token=self.agent["access_token"])
            self.assert_error(r, status, code, field=field)
        r = self.request("POST", "/api/properties/%d/images" % pid, body=b"{}", headers={"Content-Type": "application/json"},
                         token=self.agent["access_token"])
        self.assert_error(r, 415, "unsupported_media_type")
        # not the listing's agent, a buyer, nobody
        for token, status, code in ((self.other["access_token"], 403, "forbidden"),
                                    (self.buyer["access_token"], 403, "forbidden"), (None, 401, "unauthorized")):
            body, ctype = multipart([("file", "rocket.jpg", fixture("rocket.jpg"))])
            r = self.request("POST", "/api/properties/%d/images" % pid, body=body, headers={"Content-Type": ctype},
                             token=token)
            self.assert_error(r, status, code)
        # larger than 20 MB: refused while it arrives
        body, ctype = multipart([("file", "huge.jpg", b"\xff\xd8\xff\xe0" + b"\0" * (21 << 20))])
        r = self.request("POST", "/api/properties/%d/images" % pid, body=body, headers={"Content-Type": ctype},
                         token=self.agent["access_token"], timeout=60)
        self.assert_error(r, 413, "payload_too_large")
        self.assertEqual(self.request("GET", "/api/properties/%d/images" % pid, token=None).json["items"], [])
        self.assertEqual(self.stored(), before)
        self.assertEqual(self.temp_files(), [])

    def test_an_image_that_does_not_decode_fails_and_is_released(self):
        pid = self.listing()
        data = bytearray(fixture("rocket.jpg"))
        sos = data.find(b"\xff\xda")
        data[sos + 20:] = b"\xff\xd9"  # the header parses, the scan is cut short
        data = bytes(data)
        img = self.upload(pid, data, "cut.jpg").json["image"]
        done = self.wait(img["id"])
        self.assertEqual(done["status"], "failed")
        self.assertIn("could not be decoded", done["error"])
        self.wait_jobs()  # the image is marked failed just before its job records its outcome
        job = self.request("GET", "/api/jobs/%d" % done["job_id"], token=self.agent["access_token"]).json
        self.assertEqual(job["status"], "dead")
        self.assertIn("could not be decoded", job["error"])
        self.assertEqual(self.stored("originals/" + img["sha256"]), [])

    def test_duplicates_across_listings_and_similarity(self):
        a, b = self.listing(city="Ames"), self.listing(token=self.other["access_token"], city="Boone")
        cat = self.wait(self.upload(a, fixture("chelsea.png"), "chelsea.png").json["image"]["id"])
        rocket = self.wait(self.upload(a, fixture("rocket.jpg"), "rocket.jpg").json["image"]["id"])
        # a resized copy (the 320 px variant) uploaded to another listing
        small = self.content(cat["urls"]["thumb"])[2]
        copy = self.wait(self.upload(b, small, "copy.jpg", token=self.other["access_token"]).json["image"]["id"])
        self.assertEqual([(d["image_id"], d["property_id"]) for d in copy["duplicates"]], [(cat["id"], a)])
        again = self.request("GET", "/api/images/%d" % cat["id"], token=None).json
        self.assertEqual([(d["image_id"], d["property_id"]) for d in again["duplicates"]], [(copy["id"], b)])
        self.assertEqual(self.request("GET", "/api/images/%d" % rocket["id"], token=None).json["duplicates"], [])
        # similar: best first, never itself; filters by the listing
        sim = self.request("GET", "/api/images/%d/similar?limit=5" % cat["id"], token=None).json["items"]
        self.assertEqual(sim[0]["image"]["id"], copy["id"])
        self.assertNotIn(cat["id"], [i["image"]["id"] for i in sim])
        sims = [i["similarity"] for i in sim]
        self.assertEqual(sims, sorted(sims, reverse=True))
        only_a = self.request("GET", "/api/images/%d/similar?city=Ames" % cat["id"], token=None).json["items"]
        self.assertTrue(only_a and all(i["property_id"] == a for i in only_a))
        self.assertEqual(self.request("GET", "/api/images/%d/similar?city=Nowhere" % cat["id"], token=None).json["items"], [])
        cheap = self.request("GET", "/api/images/%d/similar?max_price=1" % cat["id"], token=None).json["items"]
        self.assertEqual(cheap, [])
        # by an uploaded image (anyone may search)
        body, ctype = multipart([("file", "q.png", fixture("chelsea.png"))])
        r = self.request("POST", "/api/search/images?limit=2", body=body, headers={"Content-Type": ctype}, token=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["items"][0]["image"]["id"], cat["id"])
        self.assertGreater(r.json["items"][0]["similarity"], 0.99)
        body, ctype = multipart([("file", "q.gif", b"GIF89a" + b"\0" * 50)])
        self.assert_error(self.request("POST", "/api/search/images", body=body, headers={"Content-Type": ctype}, token=None),
                          415, "unsupported_media_type")

    def test_delete_releases_the_original_when_nothing_refers_to_it(self):
        pid = self.listing()
        data = fixture("chelsea.png")
        one = self.wait(self.upload(pid, data).json["image"]["id"])
        two = self.wait(self.upload(pid, data).json["image"]["id"])
        key = "originals/%s.png" % one["sha256"]
        self.assertEqual(self.stored(key), [key])  # stored once
        self.assert_error(self.request("DELETE", "/api/images/%d" % one["id"], token=self.other["access_token"]),
                          403, "forbidden")
        self.assertEqual(self.request("DELETE", "/api/images/%d" % one["id"], token=self.agent["access_token"]).status, 204)
        self.wait_jobs()
        self.assert_error(self.request("GET", "/api/images/%d" % one["id"], token=None), 404, "not_found")
        self.assertEqual(self.stored(key), [key])  # the other image still refers to it
        self.assertEqual(self.stored("images/%d/" % one["id"]), [])
        self.assertEqual(self.request("DELETE", "/api/images/%d" % two["id"], token=self.agent["access_token"]).status, 204)
        self.wait_jobs()
        self.assertEqual(self.stored(key), [])
        self.assertEqual(self.request("GET", "/api/properties/%d" % pid, token=None).json["image_urls"], [])

    def test_deleting_a_listing_deletes_its_photos_objects(self):
        pid = self.listing()
        img = self.wait(self.upload(pid, fixture("rocket.jpg")).json["image"]["id"])
        self.assertEqual(len(self.stored("images/%d/" % img["id"])), 3)
        self.assertEqual(self.request("DELETE", "/api/properties/%d" % pid, token=self.agent["access_token"]).status, 204)
        self.wait_jobs()
        self.assertEqual(self.stored("images/%d/" % img["id"]), [])
        self.assert_error(self.request("GET", "/api/images/%d" % img["id"], token=None), 404, "not_found")
        # the original goes too unless another image (of another test) still refers to it
        others = [i for p in self.request("GET", "/api/properties?limit=100", token=None).json["items"]
                  for i in self.request("GET", "/api/properties/%d/images" % p["id"], token=None).json["items"]
                  if i["sha256"] == img["sha256"]]
        self.assertEqual(len(self.stored("originals/" + img["sha256"])), 1 if others else 0)

    def test_objects_gc_removes_orphans_only(self):
        pid = self.listing()
        img = self.wait(self.upload(pid, fixture("rocket.jpg")).json["image"]["id"])
        orphans = ["originals/" + "ab" * 32 + ".jpg", "images/987654321/thumb.jpg"]
        for key in orphans:
            self.plant(key, b"left behind")
        before = self.stored()
        env = self.server.extra_env
        r = harness.run_cli(["objects", "gc", "--dry-run"], self.server.data_dir, env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(l.split()[1] for l in r.stdout.splitlines() if l.startswith("orphan ")), sorted(orphans))
        self.assertEqual(self.stored(), before)
        r = harness.run_cli(["objects", "gc"], self.server.data_dir, env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 orphan(s) removed", r.stdout)
        self.assertEqual(self.stored(), sorted(set(before) - set(orphans)))
        self.assertEqual(self.content(img["urls"]["thumb"])[0], 200)
        r = harness.run_cli(["objects", "sweep"], self.server.data_dir, env)
        self.assertEqual(r.returncode, 2)

    def test_images_of_inactive_listings_are_private(self):
        pid = self.listing(status="pending")
        img = self.wait(self.upload(pid, fixture("rocket.jpg")).json["image"]["id"])
        self.assert_error(self.request("GET", "/api/images/%d" % img["id"], token=None), 404, "not_found")
        self.assert_error(self.request("GET", "/api/images/%d" % img["id"], token=self.buyer["access_token"]), 404, "not_found")
        self.assertEqual(self.request("GET", "/api/images/%d" % img["id"], token=self.agent["access_token"]).status, 200)


S3 = os.environ.get("HEARTH_TEST_S3")


@unittest.skipUnless(S3, "the PostgreSQL pass of make test sets HEARTH_TEST_S3 (an S3 protocol server)")
class ImagesS3Test(ImagesTest):
    """The same tests with the objects in S3: content answers 302 to a presigned URL."""
    BUCKET = "hearth-images-" + uuid.uuid4().hex[:12]
    ENV = dict(ImagesTest.ENV, S3_ENDPOINT=S3 or "", S3_BUCKET=BUCKET, S3_REGION="us-east-1",
               S3_ACCESS_KEY_ID="S3RVER", S3_SECRET_ACCESS_KEY="S3RVER")

    @classmethod
    def setUpClass(cls):
        urllib.request.urlopen(urllib.request.Request("%s/%s" % (S3, cls.BUCKET), method="PUT"), timeout=10).read()
        super().setUpClass()

    def stored(self, prefix=""):
        keys, token = [], None
        while True:
            url = "%s/%s?list-type=2&prefix=%s" % (S3, self.BUCKET, harness.urlquote(prefix))
            if token:
                url += "&continuation-token=" + harness.urlquote(token)
            doc = urllib.request.urlopen(url, timeout=10).read().decode()
            keys += [k.replace("&amp;", "&") for k in re.findall(r"<Key>([^<]*)</Key>", doc)]
            m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", doc)
            if not m:
                return sorted(keys)
            token = m.group(1)

    def plant(self, key, data):
        req = urllib.request.Request("%s/%s/%s" % (S3, self.BUCKET, key), data=data, method="PUT")
        urllib.request.urlopen(req, timeout=10).read()

    def content(self, url, token=None):
        r = self.request("GET", url, token=token)
        if r.status != 302:
            return r.status, r.headers.get("content-type"), r.raw
        self.assertIn("X-Amz-Signature=", r.headers["location"])
        with urllib.request.urlopen(r.headers["location"], timeout=10) as got:
            return got.status, got.headers.get("content-type"), got.read()


if __name__ == "__main__":
    unittest.main()
