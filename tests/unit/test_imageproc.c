/* test_imageproc: the photo pipeline on the fixtures of tests/fixtures/images (made by
 * make_fixtures.py there): sniffing (JPEG, PNG, WebP; too short, GIF and BMP refused), header
 * dimensions of every fixture and hand-made hostile headers, the 10000x10000 PNG refused by its
 * header before anything is decoded, corrupt and truncated pictures refused as validation errors,
 * the EXIF orientation applied (a portrait-tagged JPEG comes out turned, the right way round),
 * variants that are JPEGs of the right size without EXIF/XMP/GPS, public originals in their own
 * format without metadata, alpha flattened onto white, and the features: a unit-norm embedding,
 * identical features for identical bytes, a resized copy that is a near-duplicate and a different
 * photo that is not (flat pictures included), the derived labels, and the same results from four
 * threads at once. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include <cmocka.h>

#include "domain/imageproc.h"

typedef struct blob {
    unsigned char *data;
    size_t len;
} blob_t;

static blob_t fixture(const char *name)
{
    const char *dir = getenv("HEARTH_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/images/%s", dir ? dir : "tests/fixtures", name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    blob_t b = {malloc((size_t)n + 1), (size_t)n};
    assert_non_null(b.data);
    assert_int_equal(fread(b.data, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return b;
}

static bool process(const blob_t *b, image_features_t *f, buf_t *thumb, buf_t *medium, err_t *e)
{
    err_clear(e);
    return imageproc_process(imageproc_sniff(b->data, b->len), b->data, b->len, f, thumb, medium, e);
}

/* Whether a JPEG carries any APPn segment other than APP0 (JFIF) before its scan: EXIF and XMP are
 * APP1, ICC APP2, IPTC APP13. */
static bool jpeg_has_metadata(const buf_t *b)
{
    const unsigned char *p = (const unsigned char *)b->data;
    size_t i = 2;
    while (i + 4 <= b->len && p[i] == 0xFF) {
        unsigned m = p[i + 1];
        if (m == 0xDA)
            return false;
        if (m >= 0xE1 && m <= 0xEF)
            return true;
        if (m == 0xFE) /* a comment can hold anything too */
            return true;
        i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    }
    return false;
}

static bool contains(const buf_t *b, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, needle, n) == 0)
            return true;
    return false;
}

static void dims_of(const buf_t *b, img_type_t want, int *w, int *h)
{
    err_t e;
    err_clear(&e);
    assert_int_equal(imageproc_sniff(b->data, b->len), want);
    assert_true(imageproc_header(want, b->data, b->len, w, h, &e));
}

/* A decoded output (trusted here: our own encoder's bytes) as a 3-band memory image. */
static VipsImage *decode_jpeg(const buf_t *b)
{
    VipsImage *im = NULL;
    assert_int_equal(vips_jpegload_buffer(b->data, b->len, &im, NULL), 0);
    VipsImage *mem = vips_image_copy_memory(im);
    g_object_unref(im);
    assert_non_null(mem);
    return mem;
}

static const unsigned char *pixel(VipsImage *im, int x, int y) { return VIPS_IMAGE_ADDR(im, x, y); }

static bool has_label(const image_features_t *f, const char *label)
{
    for (int i = 0; i < f->nlabels; i++)
        if (strcmp(f->labels[i], label) == 0)
            return true;
    return false;
}

static int setup(void **state)
{
    (void)state;
    err_t e;
    err_clear(&e);
    return imageproc_init(&e) && imageproc_init(&e) ? 0 : -1; /* twice: init is idempotent */
}

static void sniffing(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        img_type_t type;
    } cases[] = {{"photo.jpg", IMG_JPEG},     {"portrait.jpg", IMG_JPEG},  {"corrupt.jpg", IMG_JPEG},
                 {"photo.png", IMG_PNG},      {"gray.png", IMG_PNG},       {"bomb.png", IMG_PNG},
                 {"photo.webp", IMG_WEBP},    {"lossless.webp", IMG_WEBP}, {"extended.webp", IMG_WEBP},
                 {"image.gif", IMG_NONE},     {"image.bmp", IMG_NONE}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob_t b = fixture(cases[i].name);
        assert_int_equal(imageproc_sniff(b.data, b.len), cases[i].type);
        if (cases[i].type != IMG_NONE)
            assert_int_equal(imageproc_sniff(b.data, 11), IMG_NONE); /* too short */
        free(b.data);
    }
    assert_int_equal(imageproc_sniff(NULL, 100), IMG_NONE);
    assert_int_equal(imageproc_sniff("RIFF\x10\0\0\0WAVEfmt ", 16), IMG_NONE);
    assert_int_equal(imageproc_sniff("\xFF\xD8\xFF\xE0\0\0\0\0\0\0\0\0", 12), IMG_JPEG);
    assert_string_equal(imageproc_mime(IMG_JPEG), "image/jpeg");
    assert_string_equal(imageproc_mime(IMG_PNG), "image/png");
    assert_string_equal(imageproc_mime(IMG_WEBP), "image/webp");
    assert_string_equal(imageproc_ext(IMG_JPEG), "jpg");
    assert_string_equal(imageproc_ext(IMG_PNG), "png");
    assert_string_equal(imageproc_ext(IMG_WEBP), "webp");
}

static void header_dimensions(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int w, h;
    } cases[] = {{"photo.jpg", 320, 213},    {"portrait.jpg", 160, 120}, /* as stored */
                 {"corrupt.jpg", 320, 213},  {"truncated.jpg", 320, 213}, {"photo.png", 240, 160},
                 {"gray.png", 384, 191},     {"alpha.png", 64, 64},       {"truncated.png", 240, 160},
                 {"photo.webp", 225, 150},   {"lossless.webp", 64, 48},   {"extended.webp", 64, 48}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob_t b = fixture(cases[i].name);
        err_t e;
        err_clear(&e);
        int w = 0, h = 0;
        assert_true(imageproc_header(imageproc_sniff(b.data, b.len), b.data, b.len, &w, &h, &e));
        assert_int_equal(w, cases[i].w);
        assert_int_equal(h, cases[i].h);
        /* the wrong type, and a header cut short, do not parse */
        err_clear(&e);
        img_type_t other = imageproc_sniff(b.data, b.len) == IMG_PNG ? IMG_JPEG : IMG_PNG;
        assert_false(imageproc_header(other, b.data, b.len, &w, &h, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        err_clear(&e);
        assert_false(imageproc_header(imageproc_sniff(b.data, b.len), b.data, 20, &w, &h, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        free(b.data);
    }
}

static void hostile_headers(void **state)
{
    (void)state;
    err_t e;
    int w, h;
    /* JPEG: a segment length running past the end; a length under 2; a scan before any frame; a
     * frame of height 0; and a valid frame of 60000x60000 (3.6 gigapixels) */
    static const unsigned char past[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x40, 0x00, 'J', 'F', 'I', 'F', 0, 1, 1, 0};
    static const unsigned char tiny[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char scan[] = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char zero[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x00, 0x01, 0x00, 1, 1, 0x11, 0};
    static const unsigned char huge[] = {0xFF, 0xD8, 0xFF, 0xFF, 0xC2, 0x00, 0x0B, 8,
                                         0xEA, 0x60, 0xEA, 0x60, 1,    1,    0x11, 0};
    static const unsigned char fine[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x10, 0x00, 0x20, 1, 1, 0x11, 0};
    const struct {
        const unsigned char *p;
        size_t n;
    } bad[] = {{past, sizeof past}, {tiny, sizeof tiny}, {scan, sizeof scan}, {zero, sizeof zero}, {huge, sizeof huge}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_clear(&e);
        assert_false(imageproc_header(IMG_JPEG, bad[i].p, bad[i].n, &w, &h, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
    }
    err_clear(&e);
    assert_true(imageproc_header(IMG_JPEG, fine, sizeof fine, &w, &h, &e));
    assert_int_equal(w, 32);
    assert_int_equal(h, 16);
    /* WebP: a lossy frame that is not a key frame; an unknown first chunk */
    unsigned char webp[30] = "RIFF\x16\0\0\0WEBPVP8 \x0a\0\0\0";
    webp[20] = 0x01; /* inter frame */
    err_clear(&e);
    assert_false(imageproc_header(IMG_WEBP, webp, sizeof webp, &w, &h, &e));
    memcpy(webp + 12, "ALPH", 4);
    assert_false(imageproc_header(IMG_WEBP, webp, sizeof webp, &w, &h, &e));
}

static void bomb_refused_by_header(void **state)
{
    (void)state;
    blob_t b = fixture("bomb.png");
    err_t e;
    err_clear(&e);
    int w, h;
    assert_false(imageproc_header(IMG_PNG, b.data, b.len, &w, &h, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    assert_non_null(strstr(e.message, "10000x10000"));
    image_features_t f;
    buf_t thumb, medium, out;
    buf_init(&thumb), buf_init(&medium), buf_init(&out);
    assert_false(process(&b, &f, &thumb, &medium, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    assert_non_null(strstr(e.message, "megapixels"));
    err_clear(&e);
    assert_false(imageproc_public_original(IMG_PNG, b.data, b.len, &out, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    assert_int_equal(thumb.len + medium.len + out.len, 0);
    buf_free(&thumb), buf_free(&medium), buf_free(&out);
    free(b.data);
}

static void corrupt_is_validation(void **state)
{
    (void)state;
    const char *names[] = {"corrupt.jpg", "truncated.jpg", "truncated.png", "image.gif"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        blob_t b = fixture(names[i]);
        img_type_t t = imageproc_sniff(b.data, b.len);
        image_features_t f;
        buf_t thumb, medium, out;
        buf_init(&thumb), buf_init(&medium), buf_init(&out);
        err_t e;
        err_clear(&e);
        /* a GIF is not sniffed; asked for as a JPEG, its header does not parse */
        assert_false(imageproc_process(t == IMG_NONE ? IMG_JPEG : t, b.data, b.len, &f, &thumb, &medium, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        err_clear(&e);
        assert_false(imageproc_public_original(t == IMG_NONE ? IMG_JPEG : t, b.data, b.len, &out, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        buf_free(&thumb), buf_free(&medium), buf_free(&out);
        free(b.data);
    }
}

static void orientation_applied(void **state)
{
    (void)state;
    blob_t b = fixture("portrait.jpg"); /* stored 160x120, orientation 6; red block at stored top-left */
    image_features_t f;
    buf_t thumb, medium, out;
    buf_init(&thumb), buf_init(&medium), buf_init(&out);
    err_t e;
    assert_true(process(&b, &f, &thumb, &medium, &e));
    assert_int_equal(f.width, 120);
    assert_int_equal(f.height, 160);
    assert_true(has_label(&f, "portrait"));
    int w, h;
    dims_of(&medium, IMG_JPEG, &w, &h);
    assert_int_equal(w, 120);
    assert_int_equal(h, 160);
    /* turned clockwise: the stored top-left corner is now the top-right one */
    VipsImage *im = decode_jpeg(&medium);
    const unsigned char *tr = pixel(im, 110, 8), *tl = pixel(im, 8, 8);
    assert_true(tr[0] > 170 && tr[1] < 80 && tr[2] < 80);
    assert_false(tl[0] > 170 && tl[1] < 80 && tl[2] < 80);
    g_object_unref(im);
    err_clear(&e);
    assert_true(imageproc_public_original(IMG_JPEG, b.data, b.len, &out, &e));
    dims_of(&out, IMG_JPEG, &w, &h);
    assert_int_equal(w, 120);
    assert_int_equal(h, 160);
    assert_false(jpeg_has_metadata(&out));
    buf_free(&thumb), buf_free(&medium), buf_free(&out);
    free(b.data);
}

/* A 1500x1000 JPEG with the fixture's EXIF and GPS, made by enlarging photo.jpg. */
static void big_jpeg(buf_t *out)
{
    blob_t b = fixture("photo.jpg");
    VipsImage *im = NULL, *big = NULL;
    assert_int_equal(vips_jpegload_buffer(b.data, b.len, &im, NULL), 0);
    assert_int_equal(vips_resize(im, &big, 1500.0 / 320, "vscale", 1000.0 / 213, NULL), 0);
    void *bytes;
    size_t n;
    assert_int_equal(vips_jpegsave_buffer(big, &bytes, &n, "Q", 90, NULL), 0); /* keeps the EXIF */
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
    g_object_unref(big), g_object_unref(im);
    free(b.data);
}

static void variants(void **state)
{
    (void)state;
    buf_t src, thumb, medium;
    buf_init(&src), buf_init(&thumb), buf_init(&medium);
    big_jpeg(&src);
    assert_true(jpeg_has_metadata(&src) && contains(&src, "Exif") && contains(&src, "HearthCam"));
    image_features_t f;
    err_t e;
    err_clear(&e);
    assert_true(imageproc_process(IMG_JPEG, src.data, src.len, &f, &thumb, &medium, &e));
    assert_int_equal(f.width, 1500);
    assert_int_equal(f.height, 1000);
    int w, h;
    dims_of(&thumb, IMG_JPEG, &w, &h);
    assert_int_equal(w, IMAGEPROC_THUMB);
    assert_int_equal(h, 213);
    dims_of(&medium, IMG_JPEG, &w, &h);
    assert_int_equal(w, IMAGEPROC_MEDIUM);
    assert_int_equal(h, 683);
    for (buf_t *v = &thumb; v; v = v == &thumb ? &medium : NULL) {
        assert_false(jpeg_has_metadata(v));
        assert_false(contains(v, "Exif"));
        assert_false(contains(v, "HearthCam"));
    }
    /* never enlarged: the 320x213 fixture gives 320x213 twice; XMP and GPS gone */
    blob_t b = fixture("photo.jpg");
    assert_true(process(&b, &f, &thumb, &medium, &e));
    dims_of(&thumb, IMG_JPEG, &w, &h);
    assert_int_equal(w, 320);
    assert_int_equal(h, 213);
    dims_of(&medium, IMG_JPEG, &w, &h);
    assert_int_equal(w, 320);
    assert_int_equal(h, 213);
    assert_false(jpeg_has_metadata(&medium));
    assert_false(contains(&medium, "GPSLatitude"));
    free(b.data);
    buf_free(&src), buf_free(&thumb), buf_free(&medium);
}

static void public_originals(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        img_type_t type;
        int w, h;
        const char *meta; /* a metadata marker present in the input, absent in the output */
    } cases[] = {{"photo.jpg", IMG_JPEG, 320, 213, "HearthCam"},
                 {"photo.png", IMG_PNG, 240, 160, NULL},
                 {"gray.png", IMG_PNG, 384, 191, NULL},
                 {"alpha.png", IMG_PNG, 64, 64, NULL},
                 {"photo.webp", IMG_WEBP, 225, 150, NULL},
                 {"lossless.webp", IMG_WEBP, 64, 48, NULL},
                 {"extended.webp", IMG_WEBP, 64, 48, "HearthCam"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob_t b = fixture(cases[i].name);
        buf_t in = {(char *)b.data, b.len, b.len}, out;
        buf_init(&out);
        err_t e;
        err_clear(&e);
        assert_true(imageproc_public_original(cases[i].type, b.data, b.len, &out, &e));
        int w, h;
        dims_of(&out, cases[i].type, &w, &h);
        assert_int_equal(w, cases[i].w);
        assert_int_equal(h, cases[i].h);
        if (cases[i].meta) {
            assert_true(contains(&in, cases[i].meta));
            assert_false(contains(&out, cases[i].meta));
        }
        if (cases[i].type == IMG_JPEG)
            assert_false(jpeg_has_metadata(&out));
        if (cases[i].type == IMG_WEBP)
            assert_false(contains(&out, "EXIF") || contains(&out, "XMP ") || contains(&out, "ICCP"));
        if (cases[i].type == IMG_PNG)
            assert_false(contains(&out, "eXIf") || contains(&out, "iTXt") || contains(&out, "tEXt") ||
                         contains(&out, "zTXt") || contains(&out, "iCCP"));
        buf_free(&out);
        free(b.data);
    }
}

static void alpha_flattened_on_white(void **state)
{
    (void)state;
    blob_t b = fixture("alpha.png");
    image_features_t f;
    buf_t thumb, medium;
    buf_init(&thumb), buf_init(&medium);
    err_t e;
    assert_true(process(&b, &f, &thumb, &medium, &e));
    VipsImage *im = decode_jpeg(&thumb);
    assert_int_equal(vips_image_get_bands(im), 3);
    const unsigned char *corner = pixel(im, 1, 1), *middle = pixel(im, 32, 32);
    assert_true(corner[0] > 245 && corner[1] > 245 && corner[2] > 245);
    assert_true(middle[2] > 150 && middle[0] < 80);
    assert_true(has_label(&f, "square"));
    assert_true(has_label(&f, "white")); /* the dominant colour: about 70% of the square is white */
    g_object_unref(im);
    buf_free(&thumb), buf_free(&medium);
    free(b.data);
}

static void features(void **state)
{
    (void)state;
    const char *names[] = {"photo.jpg", "portrait.jpg", "photo.png", "gray.png", "alpha.png",
                           "photo.webp", "lossless.webp", "extended.webp"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        blob_t b = fixture(names[i]);
        image_features_t f1, f2;
        err_t e;
        assert_true(process(&b, &f1, NULL, NULL, &e));
        double norm = 0;
        for (int k = 0; k < IMAGEPROC_DIM; k++) {
            assert_true(isfinite(f1.embedding[k]));
            norm += (double)f1.embedding[k] * f1.embedding[k];
        }
        assert_true(fabs(sqrt(norm) - 1.0) < 1e-4);
        assert_true(fabsf(imageproc_similarity(f1.embedding, f1.embedding) - 1.0f) < 1e-4f);
        assert_int_equal(imageproc_hamming(f1.phash, f1.phash), 0);
        assert_true(f1.phash >> 63 == 0);
        assert_true(f1.ncolors >= 1 && f1.ncolors <= IMAGEPROC_MAX_COLORS);
        assert_true(f1.nlabels >= 2 && f1.nlabels <= IMAGEPROC_MAX_LABELS);
        assert_true(f1.brightness >= 0 && f1.brightness <= 255);
        assert_true(f1.sharpness >= 0);
        /* the same bytes give the same features, with or without the variants */
        buf_t thumb, medium;
        buf_init(&thumb), buf_init(&medium);
        assert_true(process(&b, &f2, &thumb, &medium, &e));
        assert_memory_equal(f1.embedding, f2.embedding, sizeof f1.embedding);
        assert_true(f1.phash == f2.phash && f1.ncolors == f2.ncolors && f1.nlabels == f2.nlabels);
        assert_memory_equal(f1.colors, f2.colors, sizeof f1.colors);
        assert_true(f1.brightness == f2.brightness && f1.sharpness == f2.sharpness);
        for (int k = 0; k < f1.nlabels; k++)
            assert_string_equal(f1.labels[k], f2.labels[k]);
        assert_true(imageproc_near_duplicate(&f1, &f2));
        buf_free(&thumb), buf_free(&medium);
        free(b.data);
    }
}

/* photo.jpg changed by libvips: darkened (x 0.5) or blurred (sigma 4 px), as JPEG */
static void edited(const blob_t *b, bool dark, buf_t *out)
{
    VipsImage *im = NULL, *x = NULL, *y = NULL;
    assert_int_equal(vips_jpegload_buffer(b->data, b->len, &im, NULL), 0);
    if (dark)
        assert_int_equal(vips_linear1(im, &x, 0.5, 0.0, NULL), 0);
    else
        assert_int_equal(vips_gaussblur(im, &x, 4.0, NULL), 0);
    assert_int_equal(vips_cast(x, &y, VIPS_FORMAT_UCHAR, NULL), 0);
    void *bytes;
    size_t n;
    assert_int_equal(vips_jpegsave_buffer(y, &bytes, &n, "Q", 90, NULL), 0);
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
    g_object_unref(y), g_object_unref(x), g_object_unref(im);
}

static void labels(void **state)
{
    (void)state;
    image_features_t f;
    err_t e;
    blob_t page = fixture("gray.png"), rocket = fixture("photo.jpg");
    assert_true(process(&page, &f, NULL, NULL, &e));
    assert_true(has_label(&f, "landscape") && has_label(&f, "grayscale") && has_label(&f, "text-like"));
    assert_false(has_label(&f, "dark") || has_label(&f, "blurry"));
    assert_true(process(&rocket, &f, NULL, NULL, &e)); /* a rocket at night: blue, not text */
    assert_true(has_label(&f, "landscape") && has_label(&f, "blue"));
    assert_false(has_label(&f, "grayscale") || has_label(&f, "text-like") || has_label(&f, "blurry"));
    assert_false(f.blurry);
    buf_t x;
    buf_init(&x);
    edited(&rocket, true, &x);
    assert_true(imageproc_process(IMG_JPEG, x.data, x.len, &f, NULL, NULL, &e));
    assert_true(f.too_dark && has_label(&f, "dark") && f.brightness < 40);
    edited(&rocket, false, &x);
    assert_true(imageproc_process(IMG_JPEG, x.data, x.len, &f, NULL, NULL, &e));
    assert_true(f.blurry && has_label(&f, "blurry"));
    buf_free(&x);
    free(page.data), free(rocket.data);
}

/* photo.png at half size, re-encoded as JPEG quality 75 */
static void resized_copy(const blob_t *b, buf_t *out)
{
    VipsImage *im = NULL, *half = NULL;
    assert_int_equal(vips_pngload_buffer(b->data, b->len, &im, NULL), 0);
    assert_int_equal(vips_resize(im, &half, 0.5, NULL), 0);
    void *bytes;
    size_t n;
    assert_int_equal(vips_jpegsave_buffer(half, &bytes, &n, "Q", 75, NULL), 0);
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
    g_object_unref(half), g_object_unref(im);
}

/* A flat w x h JPEG of one grey level. */
static void flat_jpeg(int w, int h, double level, buf_t *out)
{
    VipsImage *black = NULL, *grey = NULL, *rgb = NULL;
    assert_int_equal(vips_black(&black, w, h, "bands", 3, NULL), 0);
    assert_int_equal(vips_linear1(black, &grey, 1.0, level, NULL), 0);
    assert_int_equal(vips_cast(grey, &rgb, VIPS_FORMAT_UCHAR, NULL), 0);
    void *bytes;
    size_t n;
    assert_int_equal(vips_jpegsave_buffer(rgb, &bytes, &n, "Q", 90, NULL), 0);
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
    g_object_unref(rgb), g_object_unref(grey), g_object_unref(black);
}

static void flat_pictures(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    image_features_t white, white_small, black, photo;
    err_t e;
    flat_jpeg(64, 48, 255, &b);
    assert_true(imageproc_process(IMG_JPEG, b.data, b.len, &white, NULL, NULL, &e));
    flat_jpeg(32, 24, 255, &b);
    assert_true(imageproc_process(IMG_JPEG, b.data, b.len, &white_small, NULL, NULL, &e));
    flat_jpeg(64, 48, 0, &b);
    assert_true(imageproc_process(IMG_JPEG, b.data, b.len, &black, NULL, NULL, &e));
    blob_t png = fixture("photo.png");
    assert_true(process(&png, &photo, NULL, NULL, &e));
    assert_true(imageproc_near_duplicate(&white, &white_small));
    assert_false(imageproc_near_duplicate(&white, &black));
    assert_false(imageproc_near_duplicate(&white, &photo));
    assert_true(has_label(&white, "white") && has_label(&black, "black") && has_label(&black, "dark"));
    assert_true(white.blurry && white.sharpness == 0);
    buf_free(&b);
    free(png.data);
}

static void near_duplicates(void **state)
{
    (void)state;
    blob_t png = fixture("photo.png"), jpg = fixture("photo.jpg"), webp = fixture("photo.webp");
    image_features_t a, copy, other, cat;
    err_t e;
    assert_true(process(&png, &a, NULL, NULL, &e));
    buf_t half;
    buf_init(&half);
    resized_copy(&png, &half);
    err_clear(&e);
    assert_true(imageproc_process(IMG_JPEG, half.data, half.len, &copy, NULL, NULL, &e));
    assert_int_equal(copy.width, 120);
    assert_true(imageproc_hamming(a.phash, copy.phash) <= IMAGEPROC_DUP_RADIUS);
    assert_true(imageproc_near_duplicate(&a, &copy));
    assert_true(imageproc_near_duplicate(&copy, &a));
    assert_true(imageproc_similarity(a.embedding, copy.embedding) > 0.9f);
    assert_true(process(&jpg, &other, NULL, NULL, &e));
    assert_true(process(&webp, &cat, NULL, NULL, &e));
    assert_false(imageproc_near_duplicate(&a, &other));
    assert_false(imageproc_near_duplicate(&a, &cat));
    assert_false(imageproc_near_duplicate(&other, &cat));
    assert_true(imageproc_similarity(a.embedding, other.embedding) < 0.8f);
    buf_free(&half);
    free(png.data), free(jpg.data), free(webp.data);
}

/* Several threads at once: every result equals the one computed alone. */
typedef struct worker {
    const blob_t *blobs;
    const image_features_t *want;
    int nblobs, bad;
} worker_t;

static void *work(void *arg)
{
    worker_t *w = arg;
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < w->nblobs; i++) {
            image_features_t f;
            buf_t thumb, medium;
            buf_init(&thumb), buf_init(&medium);
            err_t e;
            err_clear(&e);
            const blob_t *b = &w->blobs[(i + round) % w->nblobs];
            if (!imageproc_process(imageproc_sniff(b->data, b->len), b->data, b->len, &f, &thumb, &medium, &e) ||
                memcmp(f.embedding, w->want[(i + round) % w->nblobs].embedding, sizeof f.embedding) != 0 ||
                f.phash != w->want[(i + round) % w->nblobs].phash)
                w->bad++;
            buf_free(&thumb), buf_free(&medium);
        }
    return NULL;
}

static void concurrent(void **state)
{
    (void)state;
    enum { THREADS = 4, N = 3 };
    blob_t blobs[N] = {fixture("photo.jpg"), fixture("photo.png"), fixture("photo.webp")};
    image_features_t want[N];
    err_t e;
    for (int i = 0; i < N; i++)
        assert_true(process(&blobs[i], &want[i], NULL, NULL, &e));
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){blobs, want, N, 0};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    for (int i = 0; i < N; i++)
        free(blobs[i].data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sniffing),
        cmocka_unit_test(header_dimensions),
        cmocka_unit_test(hostile_headers),
        cmocka_unit_test(bomb_refused_by_header),
        cmocka_unit_test(corrupt_is_validation),
        cmocka_unit_test(orientation_applied),
        cmocka_unit_test(variants),
        cmocka_unit_test(public_originals),
        cmocka_unit_test(alpha_flattened_on_white),
        cmocka_unit_test(features),
        cmocka_unit_test(labels),
        cmocka_unit_test(near_duplicates),
        cmocka_unit_test(flat_pictures),
        cmocka_unit_test(concurrent),
    };
    int rc = cmocka_run_group_tests(tests, setup, NULL);
    vips_shutdown();
    return rc;
}
