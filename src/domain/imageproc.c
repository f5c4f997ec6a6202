/* imageproc: see imageproc.h. Decoding, variants and features of a listing photo.
 *
 * The one idea: libvips does what it is good at (decode with the one loader the magic bytes name,
 * shrink on load, colour management, resampling, JPEG encoding), once per photo: the decoded
 * picture is reduced to at most IMAGEPROC_MEDIUM px, oriented and kept in memory as 8-bit sRGB
 * ("the base"); both variants and all features are made from the base. The features themselves
 * are computed here in plain C on two small copies of it: a 128x128 squashed copy (the hash and
 * the embedding) and one fitting 512 px (sharpness, brightness). docs/images.md explains each
 * feature and how the near-duplicate rule was measured.
 *
 * Untrusted bytes: the dimensions come from our own header parser (bounds-checked, fuzzed) and a
 * picture over IMAGEPROC_MAX_PIXELS is refused before libvips sees it; the loader then runs with
 * fail_on=warning (a corrupt or truncated picture is refused, not half-decoded) and sequential
 * access, and what it reports must not exceed what the header said. */
#include "imageproc.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "../base/log.h"

#define VARIANT_Q 82    /* JPEG quality of the two variants */
#define ORIGINAL_Q 90   /* and of a re-encoded public original (JPEG, lossy WebP) */
#define SHARP_SIDE 512  /* the grey image sharpness is measured on (never enlarged) */
#define SQ 128          /* the squashed square the hash and the embedding are computed from */
#define CQ 64           /* ... and its half, for the colour features */

/* Quality flags (docs/images.md). Brightness is mean Rec.601 luma 0-255; sharpness the variance of
 * the 4-neighbour Laplacian of the grey image fitting SHARP_SIDE px. */
#define DARK_BRIGHTNESS 60.0
#define BLURRY_SHARPNESS 60.0

/* Init --------------------------------------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool init_ok;

/* libvips (and libpng through it) reports oddities of a file as GLib warnings on stderr ("iCCP:
 * known incorrect sRGB profile"): they go to the debug log instead. */
static void log_vips(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer arg)
{
    (void)domain, (void)level, (void)arg;
    log_debug("libvips: %s", message);
}

static void init_vips(void)
{
    if (VIPS_INIT("hearth") != 0) {
        vips_error_clear();
        return;
    }
    /* Only the loaders libvips considers safe for untrusted input (we call jpeg/png/webp
     * loaders by name anyway; this also covers anything reached indirectly). */
    vips_block_untrusted_set(TRUE);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
                      log_vips, NULL);
    /* hearth runs each photo on one of its own worker threads: one libvips worker per pipeline
     * keeps a job to about one core, and N workers to N cores. */
    vips_concurrency_set(1);
    /* No operation cache: every photo is new bytes, and the cache would keep decoded pixels (and
     * keys made from buffer addresses) alive between jobs. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    init_ok = true;
}

bool imageproc_init(err_t *e)
{
    pthread_once(&init_once, init_vips);
    if (!init_ok)
        return err_set(e, ERR_INTERNAL, "libvips did not initialise");
    return true;
}

/* Takes libvips' error text (it is per process, not per call: it may include another thread's
 * message) into the debug log and clears it. */
static bool vfail(err_t *e, err_code_t code, const char *msg)
{
    char *detail = vips_error_buffer_copy();
    if (detail) {
        size_t n = strlen(detail);
        while (n && (detail[n - 1] == '\n' || detail[n - 1] == ' '))
            detail[--n] = '\0';
        if (n)
            log_debug("imageproc: %s: %s", msg, detail);
        g_free(detail);
    }
    return err_set(e, code, "%s", msg);
}

#define UNDECODABLE "the photo could not be decoded (corrupt, truncated or unsupported data)"

/* Sniffing ------------------------------------------------------------------------------------ */

img_type_t imageproc_sniff(const void *head, size_t len)
{
    const unsigned char *p = head;
    if (!p || len < 12)
        return IMG_NONE;
    if (p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return IMG_JPEG;
    if (memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMG_PNG;
    if (memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return IMG_WEBP;
    return IMG_NONE;
}

const char *imageproc_mime(img_type_t t)
{
    switch (t) {
    case IMG_JPEG: return "image/jpeg";
    case IMG_PNG: return "image/png";
    case IMG_WEBP: return "image/webp";
    default: return "application/octet-stream";
    }
}

const char *imageproc_ext(img_type_t t)
{
    switch (t) {
    case IMG_JPEG: return "jpg";
    case IMG_PNG: return "png";
    case IMG_WEBP: return "webp";
    default: return "bin";
    }
}

/* Headers ------------------------------------------------------------------------------------- */

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const unsigned char *p) { return be16(p) << 16 | be16(p + 2); }
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const unsigned char *p) { return (uint32_t)p[2] << 16 | le16(p); }
static uint32_t le32(const unsigned char *p) { return (uint32_t)p[3] << 24 | le24(p); }

/* JPEG: walk the marker segments from SOI to the first start-of-frame. Any SOFn counts
 * (baseline, progressive, arithmetic, lossless, hierarchical): those libjpeg cannot decode fail
 * later, in the loader. A scan, an EOI or a second SOI before a frame header is malformed, as is a
 * height of 0 (to be defined by a DNL marker: not supported). */
static bool jpeg_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
    size_t i = 2;
    for (;;) {
        if (i >= n || p[i] != 0xFF)
            return false;
        while (i < n && p[i] == 0xFF) /* fill bytes */
            i++;
        if (i >= n)
            return false;
        unsigned m = p[i++];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) /* TEM, RSTn: no length */
            continue;
        if (m == 0x00 || m == 0xD8 || m == 0xD9 || m == 0xDA)
            return false;
        if (n - i < 2)
            return false;
        size_t seg = be16(p + i);
        if (seg < 2 || seg > n - i)
            return false;
        bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) {
            /* length, precision, height, width, components */
            if (seg < 8)
                return false;
            *h = be16(p + i + 3);
            *w = be16(p + i + 5);
            return *w > 0 && *h > 0;
        }
        i += seg;
    }
}

/* PNG: the IHDR chunk must come first (13 bytes of data; sides 1 .. 2^31-1). */
static bool png_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
    if (n < 24 || be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
        return false;
    *w = be32(p + 16);
    *h = be32(p + 20);
    return *w > 0 && *h > 0 && *w <= 0x7FFFFFFFu && *h <= 0x7FFFFFFFu;
}

/* WebP: the first chunk after "RIFF size WEBP" is VP8 (lossy: a key frame's start code, then
 * 14-bit sides), VP8L (lossless: signature 0x2F, then 14-bit sides minus one) or VP8X (extended:
 * 24-bit canvas sides minus one). */
static bool webp_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
    if (n < 30)
        return false;
    const unsigned char *c = p + 12, *d = p + 20;
    if (memcmp(c, "VP8 ", 4) == 0) {
        if ((d[0] & 1) != 0 || d[3] != 0x9D || d[4] != 0x01 || d[5] != 0x2A) /* not a key frame */
            return false;
        *w = le16(d + 6) & 0x3FFF;
        *h = le16(d + 8) & 0x3FFF;
    } else if (memcmp(c, "VP8L", 4) == 0) {
        if (d[0] != 0x2F)
            return false;
        uint32_t bits = le32(d + 1);
        *w = (bits & 0x3FFF) + 1;
        *h = ((bits >> 14) & 0x3FFF) + 1;
    } else if (memcmp(c, "VP8X", 4) == 0) {
        *w = le24(d + 4) + 1;
        *h = le24(d + 7) + 1;
    } else {
        return false;
    }
    return *w > 0 && *h > 0;
}

bool imageproc_header(img_type_t t, const void *data, size_t len, int *width, int *height, err_t *e)
{
    const unsigned char *p = data;
    uint32_t w = 0, h = 0;
    bool ok = false;
    if (p && imageproc_sniff(p, len) == t) {
        switch (t) {
        case IMG_JPEG: ok = jpeg_size(p, len, &w, &h); break;
        case IMG_PNG: ok = png_size(p, len, &w, &h); break;
        case IMG_WEBP: ok = webp_size(p, len, &w, &h); break;
        default: break;
        }
    }
    if (!ok) {
        static const char *const names[] = {"JPEG, PNG or WebP", "JPEG", "PNG", "WebP"};
        return err_set(e, ERR_VALIDATION, "the photo does not start with a valid %s header",
                       names[t >= IMG_NONE && t <= IMG_WEBP ? t : IMG_NONE]);
    }
    if ((int64_t)w * h > IMAGEPROC_MAX_PIXELS)
        return err_set(e, ERR_VALIDATION, "the photo is %ux%u: more than %lld megapixels", w, h,
                       IMAGEPROC_MAX_PIXELS / 1000000);
    *width = (int)w;
    *height = (int)h;
    return true;
}

/* Loading ------------------------------------------------------------------------------------- */

/* The picture as loaded (lazily: libvips has read the header, no pixels yet). */
typedef struct loaded {
    VipsImage *img;
    int width, height; /* the stored picture's size, from our header parser */
    int orientation;   /* EXIF 1..8 */
} loaded_t;

/* Loads with t's own loader, reduced on load where the format can (JPEG: 1/2, 1/4, 1/8 in the
 * DCT; WebP: libwebp's scaler) as long as the longest side stays >= need (0: full size). The
 * image is owned by `ctx`. */
static bool load(VipsObject *ctx, img_type_t t, const void *data, size_t len, int need, VipsAccess access,
                 loaded_t *out, err_t *e)
{
    int w, h;
    if (!imageproc_header(t, data, len, &w, &h, e))
        return false;
    int longest = w > h ? w : h;
    void *buf = (void *)data; /* libvips' loaders take a non-const pointer; they do not write */
    VipsImage **img = (VipsImage **)vips_object_local_array(ctx, 1);
    int rc = -1, maxw = w, maxh = h;
    switch (t) {
    case IMG_JPEG: {
        int shrink = 1;
        while (need > 0 && shrink < 8 && (longest + 2 * shrink - 1) / (2 * shrink) >= need)
            shrink *= 2;
        maxw = (w + shrink - 1) / shrink;
        maxh = (h + shrink - 1) / shrink;
        rc = vips_jpegload_buffer(buf, len, &img[0], "shrink", shrink, "access", access, "fail_on",
                                  VIPS_FAIL_ON_WARNING, NULL);
        break;
    }
    case IMG_PNG:
        rc = vips_pngload_buffer(buf, len, &img[0], "access", access, "fail_on", VIPS_FAIL_ON_WARNING, NULL);
        break;
    case IMG_WEBP: {
        double scale = 1.0;
        if (need > 0 && longest > need + 1)
            scale = (need + 1.0) / longest; /* one px of slack against rounding */
        maxw = (int)ceil(w * scale) + 1;
        maxh = (int)ceil(h * scale) + 1;
        rc = vips_webpload_buffer(buf, len, &img[0], "scale", scale, "access", access, "fail_on",
                                  VIPS_FAIL_ON_WARNING, NULL);
        break;
    }
    default: break;
    }
    if (rc != 0)
        return vfail(e, ERR_VALIDATION, UNDECODABLE);
    VipsImage *im = img[0];
    /* The decoder must not produce more than the header promised (a parser differential would
     * otherwise bypass the pixel limit). */
    if (vips_image_get_width(im) > maxw || vips_image_get_height(im) > maxh || vips_image_get_width(im) < 1 ||
        vips_image_get_height(im) < 1)
        return err_set(e, ERR_VALIDATION, "the photo's header and its data disagree on its size");
    int o = vips_image_get_orientation(im);
    out->img = im;
    out->width = w;
    out->height = h;
    out->orientation = o >= 1 && o <= 8 ? o : 1;
    return true;
}

/* Whether an ICC profile is an sRGB one, by its description ("sRGB IEC61966-2.1", "sRGB
 * built-in", ...): those need no transform, which saves lcms a float conversion of every pixel. The
 * description is a v2 'desc' (ASCII) or a v4 'mluc' (UTF-16BE) tag; every offset is checked. */
static bool icc_is_srgb(const unsigned char *p, size_t n)
{
    if (n < 132 || memcmp(p + 16, "RGB ", 4) != 0)
        return false;
    uint32_t count = be32(p + 128);
    if (count > (n - 132) / 12)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *tag = p + 132 + 12 * i;
        if (memcmp(tag, "desc", 4) != 0)
            continue;
        uint32_t off = be32(tag + 4), size = be32(tag + 8);
        if (off > n || size > n - off || size < 12)
            return false;
        const unsigned char *d = p + off;
        char text[64];
        size_t k = 0;
        if (memcmp(d, "desc", 4) == 0) {
            uint32_t len = be32(d + 8);
            for (uint32_t j = 0; j < len && 12 + j < size && k < sizeof text - 1; j++)
                text[k++] = (char)d[12 + j];
        } else if (memcmp(d, "mluc", 4) == 0 && size >= 28) {
            uint32_t slen = be32(d + 20), soff = be32(d + 24); /* the first record */
            if (soff > size || slen > size - soff)
                return false;
            for (uint32_t j = 0; j + 1 < slen && k < sizeof text - 1; j += 2)
                text[k++] = d[soff + j] ? '?' : (char)d[soff + j + 1];
        }
        text[k] = '\0';
        return strstr(text, "sRGB") != NULL;
    }
    return false;
}

/* To 8-bit sRGB (or 8-bit grey when `keep_grey` and the picture is grey), through the embedded
 * ICC profile when there is one that is not sRGB and that works, keeping any alpha band. */
static bool to_srgb(VipsObject *ctx, VipsImage *in, bool keep_grey, VipsImage **out, err_t *e)
{
    VipsImage **t = (VipsImage **)vips_object_local_array(ctx, 3);
    VipsInterpretation interp = vips_image_guess_interpretation(in);
    bool grey = interp == VIPS_INTERPRETATION_B_W || interp == VIPS_INTERPRETATION_GREY16;
    VipsInterpretation to = keep_grey && grey ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
    VipsImage *x = NULL;
    const void *icc;
    size_t icc_len;
    if (!(keep_grey && grey) && vips_image_get_typeof(in, VIPS_META_ICC_NAME) &&
        vips_image_get_blob(in, VIPS_META_ICC_NAME, &icc, &icc_len) == 0 && !icc_is_srgb(icc, icc_len)) {
        if (vips_icc_transform(in, &t[0], "srgb", "embedded", TRUE, "intent", VIPS_INTENT_RELATIVE, NULL) == 0)
            x = t[0];
        else
            vips_error_clear(); /* a broken profile: convert as if there were none */
    }
    if (!x) {
        if (interp == to) {
            x = in;
        } else {
            if (vips_colourspace(in, &t[1], to, NULL) != 0)
                return vfail(e, ERR_VALIDATION, UNDECODABLE);
            x = t[1];
        }
    }
    if (vips_image_get_format(x) != VIPS_FORMAT_UCHAR) {
        /* 16-bit data keeps its top byte; anything else is clipped to 0..255 */
        bool shift = vips_image_get_format(x) == VIPS_FORMAT_USHORT;
        if (vips_cast(x, &t[2], VIPS_FORMAT_UCHAR, "shift", shift, NULL) != 0)
            return vfail(e, ERR_INTERNAL, "image conversion failed");
        x = t[2];
    }
    *out = x;
    return true;
}

/* Alpha flattened onto white (whatever the picture's colour space and depth: white is the
 * format's maximum in every band). */
static bool flatten(VipsObject *ctx, VipsImage *in, VipsImage **out, err_t *e)
{
    if (!vips_image_hasalpha(in)) {
        *out = in;
        return true;
    }
    VipsImage **t = (VipsImage **)vips_object_local_array(ctx, 1);
    double max = vips_image_get_format(in) == VIPS_FORMAT_USHORT ? 65535.0 : 255.0;
    VipsArrayDouble *white = vips_array_double_newv(1, max);
    int rc = vips_flatten(in, &t[0], "background", white, "max_alpha", max, NULL);
    vips_area_unref(VIPS_AREA(white));
    if (rc != 0)
        return vfail(e, ERR_VALIDATION, UNDECODABLE);
    *out = t[0];
    return true;
}

/* Exactly three bands (the colour ones). */
static bool three_bands(VipsObject *ctx, VipsImage *in, VipsImage **out, err_t *e)
{
    int bands = vips_image_get_bands(in);
    if (bands == 3) {
        *out = in;
        return true;
    }
    VipsImage **t = (VipsImage **)vips_object_local_array(ctx, 1);
    int rc = bands > 3 ? vips_extract_band(in, &t[0], 0, "n", 3, NULL) : vips_bandjoin_const1(in, &t[0], 0.0, NULL);
    if (rc != 0 || vips_image_get_bands(t[0]) != 3)
        return vfail(e, ERR_VALIDATION, UNDECODABLE);
    *out = t[0];
    return true;
}

/* The size fitting a box of `box` px, never enlarged, at least 1x1. */
static void fit(int w, int h, int box, int *fw, int *fh)
{
    if (w <= box && h <= box) {
        *fw = w, *fh = h;
    } else if (w >= h) {
        *fw = box;
        *fh = (int)lround((double)h * box / w);
    } else {
        *fh = box;
        *fw = (int)lround((double)w * box / h);
    }
    if (*fw < 1)
        *fw = 1;
    if (*fh < 1)
        *fh = 1;
}

/* Resamples to exactly w x h (Lanczos 3; box-prefiltered by libvips for large reductions). */
static bool resize_to(VipsObject *ctx, VipsImage *in, int w, int h, VipsImage **out, err_t *e)
{
    int iw = vips_image_get_width(in), ih = vips_image_get_height(in);
    if (iw == w && ih == h) {
        *out = in;
        return true;
    }
    VipsImage **t = (VipsImage **)vips_object_local_array(ctx, 2);
    if (vips_resize(in, &t[0], (double)w / iw, "vscale", (double)h / ih, NULL) != 0)
        return vfail(e, ERR_VALIDATION, UNDECODABLE);
    VipsImage *x = t[0];
    if (vips_image_get_width(x) != w || vips_image_get_height(x) != h) {
        /* libvips rounds the output size; trim or pad the odd pixel */
        if (vips_gravity(x, &t[1], VIPS_COMPASS_DIRECTION_CENTRE, w, h, "extend", VIPS_EXTEND_COPY, NULL) != 0)
            return vfail(e, ERR_INTERNAL, "image resize failed");
        x = t[1];
    }
    *out = x;
    return true;
}

/* The base: decoded, reduced to fit IMAGEPROC_MEDIUM, oriented, 8-bit sRGB without alpha, in
 * memory. Owned by `ctx`. *w, *h: the original's displayed size. Resampling happens in the
 * picture's own colour space, before colour conversion, so that conversion (an ICC transform can
 * cost more than the decoding) runs on at most a megapixel. */
static bool make_base(VipsObject *ctx, img_type_t t, const void *data, size_t len, VipsImage **base, int *w, int *h,
                      err_t *e)
{
    loaded_t ld;
    if (!load(ctx, t, data, len, IMAGEPROC_MEDIUM, VIPS_ACCESS_SEQUENTIAL, &ld, e))
        return false;
    VipsImage **tt = (VipsImage **)vips_object_local_array(ctx, 3);
    VipsImage *flat = NULL, *small = NULL, *srgb = NULL, *rgb = NULL;
    int fw, fh;
    fit(ld.width, ld.height, IMAGEPROC_MEDIUM, &fw, &fh); /* from the header: the same for every shrink */
    if (!flatten(ctx, ld.img, &flat, e) || !resize_to(ctx, flat, fw, fh, &small, e))
        return false;
    /* Decoding happens here, sequentially, into a picture of at most 1024x1024. */
    if (!(tt[0] = vips_image_copy_memory(small)))
        return vfail(e, ERR_VALIDATION, UNDECODABLE);
    if (!to_srgb(ctx, tt[0], false, &srgb, e) || !three_bands(ctx, srgb, &rgb, e))
        return false;
    if (ld.orientation != 1) {
        if (vips_autorot(rgb, &tt[1], NULL) != 0)
            return vfail(e, ERR_INTERNAL, "image rotation failed");
        rgb = tt[1];
    }
    if (!(tt[2] = vips_image_copy_memory(rgb)))
        return vfail(e, ERR_INTERNAL, "image conversion failed");
    bool swap = ld.orientation >= 5;
    *w = swap ? ld.height : ld.width;
    *h = swap ? ld.width : ld.height;
    *base = tt[2];
    return true;
}

/* A JPEG variant of `in` fitting `box`, metadata stripped, into `out`. */
static bool write_variant(VipsObject *ctx, VipsImage *in, int ow, int oh, int box, buf_t *out, err_t *e)
{
    int fw, fh;
    fit(ow, oh, box, &fw, &fh);
    /* the base may itself be smaller than the original: never enlarge it either */
    if (fw > vips_image_get_width(in) || fh > vips_image_get_height(in))
        fw = vips_image_get_width(in), fh = vips_image_get_height(in);
    VipsImage *x;
    if (!resize_to(ctx, in, fw, fh, &x, e))
        return false;
    void *bytes = NULL;
    size_t n = 0;
    if (vips_jpegsave_buffer(x, &bytes, &n, "Q", VARIANT_Q, "strip", TRUE, NULL) != 0)
        return vfail(e, ERR_INTERNAL, "JPEG encoding failed");
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
    return true;
}

/* Resampling for the features, in C on the base's bytes: separable, area-averaging (every source
 * pixel weighted by how much of it an output pixel covers) when reducing, bilinear when enlarging. */
typedef struct taps {
    int *first, *count; /* per output index */
    float *w;           /* count weights each, at stride `max` */
    int max;
} taps_t;

static void taps_make(taps_t *t, int in, int out)
{
    double scale = (double)in / out;
    t->max = scale > 1 ? (int)ceil(scale) + 1 : 2;
    t->first = malloc(sizeof(int) * (size_t)out);
    t->count = malloc(sizeof(int) * (size_t)out);
    t->w = calloc((size_t)out * t->max, sizeof(float));
    if (!t->first || !t->count || !t->w)
        abort();
    for (int o = 0; o < out; o++) {
        float *w = t->w + (size_t)o * t->max;
        if (scale > 1) {
            double a = o * scale, b = a + scale;
            int i0 = (int)floor(a), n = 0;
            for (int i = i0; i < b && i < in && n < t->max; i++, n++)
                w[n] = (float)((fmin(b, i + 1.0) - fmax(a, (double)i)) / scale);
            t->first[o] = i0, t->count[o] = n;
        } else {
            double pos = (o + 0.5) * scale - 0.5;
            int i0 = (int)floor(pos);
            double fr = pos - i0;
            if (i0 < 0)
                i0 = 0, fr = 0;
            if (i0 >= in - 1)
                i0 = in - 1, fr = 0;
            t->first[o] = i0;
            t->count[o] = fr > 0 ? 2 : 1;
            w[0] = (float)(1.0 - fr), w[1] = (float)fr;
        }
    }
}

static void taps_free(taps_t *t)
{
    free(t->first), free(t->count), free(t->w);
}

/* src: sw x sh packed RGB (row stride `stride` bytes) to dst: dw x dh packed RGB. */
static void resample(const unsigned char *src, int sw, int sh, size_t stride, unsigned char *dst, int dw, int dh)
{
    taps_t tx, ty;
    taps_make(&tx, sw, dw);
    taps_make(&ty, sh, dh);
    float *mid = malloc(sizeof(float) * (size_t)dw * sh * 3);
    if (!mid)
        abort();
    for (int y = 0; y < sh; y++) {
        const unsigned char *row = src + (size_t)y * stride;
        float *m = mid + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++) {
            const float *w = tx.w + (size_t)x * tx.max;
            const unsigned char *p = row + (size_t)tx.first[x] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < tx.count[x]; k++, p += 3)
                r += w[k] * p[0], g += w[k] * p[1], b += w[k] * p[2];
            m[x * 3] = r, m[x * 3 + 1] = g, m[x * 3 + 2] = b;
        }
    }
    for (int y = 0; y < dh; y++) {
        const float *w = ty.w + (size_t)y * ty.max;
        unsigned char *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw * 3; x++) {
            float v = 0;
            const float *m = mid + (size_t)ty.first[y] * dw * 3 + x;
            for (int k = 0; k < ty.count[y]; k++, m += (size_t)dw * 3)
                v += w[k] * *m;
            d[x] = (unsigned char)(v <= 0 ? 0 : v >= 255 ? 255 : (int)(v + 0.5f));
        }
    }
    free(mid);
    taps_free(&tx), taps_free(&ty);
}

/* Colour ------------------------------------------------------------------------------------- */

typedef struct lab {
    float l, a, b;
} lab_t;

static float srgb_linear[256]; /* sRGB value to linear light */
static float cosine[9][32];     /* DCT-II basis: cos(pi (2n + 1) k / 64) */
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
    for (int i = 0; i < 256; i++) {
        double c = i / 255.0;
        srgb_linear[i] = (float)(c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4));
    }
    for (int k = 0; k < 9; k++)
        for (int n = 0; n < 32; n++)
            cosine[k][n] = (float)cos(M_PI * (2 * n + 1) * k / 64.0);
}

static float lab_f(float t) { return t > 0.008856f ? cbrtf(t) : 7.787f * t + 16.0f / 116.0f; }

/* sRGB (D65) to CIE L*a*b*. */
static lab_t to_lab(const unsigned char *rgb)
{
    float r = srgb_linear[rgb[0]], g = srgb_linear[rgb[1]], b = srgb_linear[rgb[2]];
    float x = (0.4124f * r + 0.3576f * g + 0.1805f * b) / 0.95047f;
    float y = 0.2126f * r + 0.7152f * g + 0.0722f * b;
    float z = (0.0193f * r + 0.1192f * g + 0.9505f * b) / 1.08883f;
    float fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
    return (lab_t){116.0f * fy - 16.0f, 500.0f * (fx - fy), 200.0f * (fy - fz)};
}

static float luma(const unsigned char *rgb) { return 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2]; }

/* Dominant colours: median cut of the CQ x CQ pixels into up to IMAGEPROC_MAX_COLORS boxes (split
 * the box with the widest channel range at its median), refined by three Lloyd (k-means)
 * iterations from the boxes' means; clusters under 2% of the pixels are dropped; most common
 * first. */
typedef struct cbox {
    int lo, hi; /* range in the index array */
} cbox_t;

static int range_of(const unsigned char *px, const int *idx, cbox_t b, int *ch)
{
    int lo[3] = {255, 255, 255}, hi[3] = {0, 0, 0};
    for (int i = b.lo; i < b.hi; i++)
        for (int c = 0; c < 3; c++) {
            int v = px[idx[i] * 3 + c];
            lo[c] = v < lo[c] ? v : lo[c];
            hi[c] = v > hi[c] ? v : hi[c];
        }
    int best = 0;
    for (int c = 1; c < 3; c++)
        if (hi[c] - lo[c] > hi[best] - lo[best])
            best = c;
    *ch = best;
    return hi[best] - lo[best];
}

static void sort_by_channel(const unsigned char *px, int *idx, int n, int ch)
{
    /* a counting sort on the channel's value: stable, O(n + 256), no comparator state */
    int count[257] = {0};
    for (int i = 0; i < n; i++)
        count[px[idx[i] * 3 + ch] + 1]++;
    for (int v = 0; v < 256; v++)
        count[v + 1] += count[v];
    int *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        abort();
    for (int i = 0; i < n; i++)
        tmp[count[px[idx[i] * 3 + ch]]++] = idx[i];
    memcpy(idx, tmp, (size_t)n * sizeof *tmp);
    free(tmp);
}

static void dominant_colors(const unsigned char *px, int n, image_features_t *f)
{
    enum { K = IMAGEPROC_MAX_COLORS };
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        abort();
    for (int i = 0; i < n; i++)
        idx[i] = i;
    cbox_t box[K];
    int nbox = 1;
    box[0] = (cbox_t){0, n};
    while (nbox < K) {
        int pick = -1, pick_ch = 0;
        long best = 0;
        for (int b = 0; b < nbox; b++) {
            int ch;
            long score = (long)range_of(px, idx, box[b], &ch) * (box[b].hi - box[b].lo);
            if (box[b].hi - box[b].lo >= 2 && score > best)
                best = score, pick = b, pick_ch = ch;
        }
        if (pick < 0)
            break;
        cbox_t b = box[pick];
        sort_by_channel(px, idx + b.lo, b.hi - b.lo, pick_ch);
        int mid = b.lo + (b.hi - b.lo) / 2;
        box[pick] = (cbox_t){b.lo, mid};
        box[nbox++] = (cbox_t){mid, b.hi};
    }
    float cen[K][3];
    int cnt[K];
    for (int b = 0; b < nbox; b++) {
        double s[3] = {0, 0, 0};
        for (int i = box[b].lo; i < box[b].hi; i++)
            for (int c = 0; c < 3; c++)
                s[c] += px[idx[i] * 3 + c];
        for (int c = 0; c < 3; c++)
            cen[b][c] = (float)(s[c] / (box[b].hi - box[b].lo));
    }
    for (int it = 0; it < 3; it++) {
        double s[K][3] = {{0}};
        memset(cnt, 0, sizeof cnt);
        for (int i = 0; i < n; i++) {
            const unsigned char *p = px + i * 3;
            int best = 0;
            float bd = 1e30f;
            for (int b = 0; b < nbox; b++) {
                float d = 0;
                for (int c = 0; c < 3; c++)
                    d += (p[c] - cen[b][c]) * (p[c] - cen[b][c]);
                if (d < bd)
                    bd = d, best = b;
            }
            cnt[best]++;
            for (int c = 0; c < 3; c++)
                s[best][c] += p[c];
        }
        for (int b = 0; b < nbox; b++)
            if (cnt[b])
                for (int c = 0; c < 3; c++)
                    cen[b][c] = (float)(s[b][c] / cnt[b]);
    }
    free(idx);
    int order[K];
    for (int b = 0; b < nbox; b++)
        order[b] = b;
    for (int i = 1; i < nbox; i++) /* by count, descending; ties by index: deterministic */
        for (int j = i; j > 0 && cnt[order[j]] > cnt[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    f->ncolors = 0;
    for (int i = 0; i < nbox; i++) {
        int b = order[i];
        if (cnt[b] * 50 < n && f->ncolors > 0)
            continue;
        uint32_t rgb = 0;
        for (int c = 0; c < 3; c++)
            rgb = rgb << 8 | (uint32_t)lroundf(cen[b][c] < 0 ? 0 : cen[b][c] > 255 ? 255 : cen[b][c]);
        f->colors[f->ncolors++] = rgb;
    }
}

/* A plain colour name for an sRGB colour (HSV sectors; dark oranges and reds are "brown"). */
static const char *color_name(uint32_t rgb)
{
    double r = (rgb >> 16 & 255) / 255.0, g = (rgb >> 8 & 255) / 255.0, b = (rgb & 255) / 255.0;
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn;
    double s = mx > 0 ? d / mx : 0, v = mx;
    if (v < 0.18)
        return "black";
    if (s < 0.18 || d < 0.08)
        return v > 0.85 ? "white" : "gray";
    double hue;
    if (mx == r)
        hue = fmod((g - b) / d + 6.0, 6.0) * 60.0;
    else if (mx == g)
        hue = ((b - r) / d + 2.0) * 60.0;
    else
        hue = ((r - g) / d + 4.0) * 60.0;
    if ((hue < 45 || hue >= 345) && v < 0.6)
        return "brown";
    if (hue < 15 || hue >= 345)
        return "red";
    if (hue < 45)
        return "orange";
    if (hue < 70)
        return "yellow";
    if (hue < 165)
        return "green";
    if (hue < 195)
        return "cyan";
    if (hue < 255)
        return "blue";
    if (hue < 290)
        return "purple";
    return "pink";
}

/* Embedding ----------------------------------------------------------------------------------- */

/* The embedding is five blocks in this order (docs/images.md). Each is normalised on its own and
 * multiplied by its weight, then the whole vector is scaled to unit length. Blocks marked "soft"
 * are divided by sqrt(|v|^2 + eps^2) instead of |v|, so that a block with little in it (the
 * layout of an evenly lit texture, the orientations of an isotropic one) stays small instead of
 * being blown up to full weight with its noise. */
enum {
    B_LAYOUT = 0, /* 4x4 grid of mean L*, a*, b* (L* minus its mean; all / 20); soft, eps 2 */
    B_COLOR,      /* colour histogram: 12 hues x 2 lightness + 4 grey levels, soft-binned, sqrt */
    B_EDGES,      /* 3x3 grid x 8 gradient orientations, magnitude-weighted, sqrt, minus the mean;
                     soft, eps 0.2 */
    B_DCT,        /* DCT (u, v), 1 <= u + v <= 8, of the central 70% of the blurred grey image */
    B_CENTRE,     /* the central 50% of the blurred grey image as an 8x8 grid of means, zero-mean */
    B__COUNT
};
static const int block_dim[B__COUNT] = {48, 28, 72, 44, 64}; /* sum: IMAGEPROC_DIM */
static const float block_weight[B__COUNT] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
static const float block_eps[B__COUNT] = {2.0f, 0.0f, 0.2f, 0.0f, 0.0f}; /* 0: plain L2 */

#define STRUCT_BLUR 2.5f  /* sigma (px of the 128 px square) of the blur before the DCT and centre */
#define EDGE_BLUR 1.0f    /* ... and before the gradients */
#define DCT_SPAN 0.70     /* the hash and the DCT block see the central 70% of each side */
#define DUP_STRUCTURE 0.87f      /* near-duplicate: mean cosine of the DCT and centre blocks */
#define DUP_FLAT_SIMILARITY 0.95f /* ... and, for pictures without structure, of the embeddings */

_Static_assert(48 + 28 + 72 + 44 + 64 == IMAGEPROC_DIM, "the blocks fill the embedding");

static int block_off(int b)
{
    int o = 0;
    for (int i = 0; i < b; i++)
        o += block_dim[i];
    return o;
}

static void block_normalise(float *v, int n, float eps, float weight)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    s += (double)eps * eps;
    if (s < 1e-20) {
        memset(v, 0, (size_t)n * sizeof *v);
        return;
    }
    float k = (float)(weight / sqrt(s));
    for (int i = 0; i < n; i++)
        v[i] *= k;
}

/* Linear ("soft") binning of x on a circle of n bins (bin i centred on i). */
static void soft_bin_circular(float *h, int n, float x, float w)
{
    float fl = floorf(x);
    float fr = x - fl;
    int i0 = ((int)fl % n + n) % n, i1 = (i0 + 1) % n;
    h[i0] += w * (1.0f - fr);
    h[i1] += w * fr;
}

/* ... and on a line of n bins centred on 0.5, 1.5, ...: x in [0, n]. */
static void soft_bin_linear(float *h, int n, float x, float w)
{
    float c = x - 0.5f;
    if (c <= 0) {
        h[0] += w;
        return;
    }
    if (c >= n - 1) {
        h[n - 1] += w;
        return;
    }
    int i0 = (int)c;
    float fr = c - i0;
    h[i0] += w * (1.0f - fr);
    h[i0 + 1] += w * fr;
}

/* Separable Gaussian blur of an SQ x SQ image, borders mirrored (without repeating the edge);
 * `tmp` holds SQ x SQ floats. */
static void blur(const float *in, float *out, float *tmp, float sigma)
{
    enum { RMAX = 12 };
    float k[2 * RMAX + 1];
    int r = (int)(3.0f * sigma + 0.5f);
    if (r > RMAX)
        r = RMAX;
    float sum = 0;
    for (int i = -r; i <= r; i++)
        sum += k[i + r] = expf(-(float)(i * i) / (2.0f * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++)
        k[i] /= sum;
#define MIRROR(i) ((i) < 0 ? -(i) : (i) >= SQ ? 2 * (SQ - 1) - (i) : (i))
    for (int y = 0; y < SQ; y++)
        for (int x = 0; x < SQ; x++) {
            float s = 0;
            for (int i = -r; i <= r; i++)
                s += k[i + r] * in[y * SQ + MIRROR(x + i)];
            tmp[y * SQ + x] = s;
        }
    for (int y = 0; y < SQ; y++)
        for (int x = 0; x < SQ; x++) {
            float s = 0;
            for (int i = -r; i <= r; i++)
                s += k[i + r] * tmp[MIRROR(y + i) * SQ + x];
            out[y * SQ + x] = s;
        }
#undef MIRROR
}

/* n x n bilinear samples of the central `span` (fraction of each side) of an SQ x SQ image. */
static void sample_centre(const float *g, double span, int n, float *out)
{
    double w = span * SQ, c = (SQ - w) / 2;
    int i0[64], i1[64];
    float fr[64];
    for (int i = 0; i < n; i++) {
        double pos = c + (i + 0.5) * w / n - 0.5;
        int a = (int)floor(pos);
        i0[i] = a < 0 ? 0 : a;
        i1[i] = a + 1 > SQ - 1 ? SQ - 1 : a + 1;
        fr[i] = (float)(pos - a);
    }
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            float top = g[i0[y] * SQ + i0[x]] * (1 - fr[x]) + g[i0[y] * SQ + i1[x]] * fr[x];
            float bot = g[i1[y] * SQ + i0[x]] * (1 - fr[x]) + g[i1[y] * SQ + i1[x]] * fr[x];
            out[y * n + x] = top * (1 - fr[y]) + bot * fr[y];
        }
}

/* The 2-D DCT-II of a 32x32 image, coefficients (u, v) for u, v < 9 only (u: vertical). */
static void dct32(const float *g, float out[9][9])
{
    float rows[9][32];
    for (int u = 0; u < 9; u++)
        for (int x = 0; x < 32; x++) {
            float s = 0;
            for (int y = 0; y < 32; y++)
                s += cosine[u][y] * g[y * 32 + x];
            rows[u][x] = s;
        }
    for (int u = 0; u < 9; u++)
        for (int v = 0; v < 9; v++) {
            float s = 0;
            for (int x = 0; x < 32; x++)
                s += rows[u][x] * cosine[v][x];
            out[u][v] = s;
        }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The perceptual hash: bit i (0..62) says whether the i-th of the 63 coefficients of the top-left
 * 8x8 DCT block (row-major, DC excluded) is above their median; bit 63 is always 0. */
static uint64_t phash_of(float d[9][9])
{
    float c[63], sorted[63];
    int k = 0;
    for (int u = 0; u < 8; u++)
        for (int v = 0; v < 8; v++)
            if (u || v)
                c[k++] = d[u][v];
    memcpy(sorted, c, sizeof c);
    qsort(sorted, 63, sizeof *sorted, cmp_float);
    float median = sorted[31];
    uint64_t h = 0;
    for (int i = 0; i < 63; i++)
        if (c[i] > median)
            h |= (uint64_t)1 << i;
    return h;
}

/* Everything computed from the SQ x SQ squashed copy `sq` (RGB): the hash, the embedding, the
 * dominant colours, and whether the picture has no colour. */
static void describe(const unsigned char *sq, image_features_t *f, bool *grayscale)
{
    float *g = malloc(sizeof(float) * SQ * SQ * 3);
    unsigned char *c64 = malloc(CQ * CQ * 3);
    lab_t *lab = malloc(sizeof(lab_t) * CQ * CQ);
    if (!g || !c64 || !lab)
        abort();
    float *gb = g + SQ * SQ, *tmp = g + 2 * SQ * SQ; /* blurred, scratch */
    for (int i = 0; i < SQ * SQ; i++)
        g[i] = luma(sq + i * 3);
    for (int y = 0; y < CQ; y++)
        for (int x = 0; x < CQ; x++)
            for (int c = 0; c < 3; c++) {
                const unsigned char *p = sq + ((2 * y) * SQ + 2 * x) * 3 + c;
                c64[(y * CQ + x) * 3 + c] = (unsigned char)((p[0] + p[3] + p[SQ * 3] + p[SQ * 3 + 3] + 2) / 4);
            }
    int chromatic = 0;
    for (int i = 0; i < CQ * CQ; i++) {
        lab[i] = to_lab(c64 + i * 3);
        if (hypotf(lab[i].a, lab[i].b) > 12.0f)
            chromatic++;
    }
    *grayscale = chromatic * 100 < CQ * CQ; /* under 1% of the pixels have any colour */

    float *emb = f->embedding;
    memset(emb, 0, sizeof f->embedding);
    { /* layout: 4x4 cells of 16x16 px of the 64 px square */
        float *v = emb + block_off(B_LAYOUT);
        float cl[16] = {0}, ca[16] = {0}, cb[16] = {0};
        for (int y = 0; y < CQ; y++)
            for (int x = 0; x < CQ; x++) {
                int cell = (y / 16) * 4 + x / 16;
                lab_t p = lab[y * CQ + x];
                cl[cell] += p.l, ca[cell] += p.a, cb[cell] += p.b;
            }
        float mean = 0;
        for (int i = 0; i < 16; i++)
            mean += cl[i] / 256 / 16;
        for (int i = 0; i < 16; i++) {
            v[i] = (cl[i] / 256 - mean) / 20.0f;
            v[16 + i] = ca[i] / 256 / 20.0f;
            v[32 + i] = cb[i] / 256 / 20.0f;
        }
    }
    { /* colour histogram: a pixel is neutral below chroma 8, coloured above 18, in between both */
        float *v = emb + block_off(B_COLOR);
        for (int i = 0; i < CQ * CQ; i++) {
            lab_t p = lab[i];
            float wc = (hypotf(p.a, p.b) - 8.0f) / 10.0f;
            wc = wc < 0 ? 0 : wc > 1 ? 1 : wc;
            if (wc < 1)
                soft_bin_linear(v + 24, 4, p.l / 25.0f, 1.0f - wc);
            if (wc > 0) {
                float hue = atan2f(p.b, p.a);
                if (hue < 0)
                    hue += 2.0f * (float)M_PI;
                float pos = hue / (2.0f * (float)M_PI) * 12.0f;
                float wl = p.l / 50.0f - 0.5f; /* dark and light, soft */
                wl = wl < 0 ? 0 : wl > 1 ? 1 : wl;
                soft_bin_circular(v, 12, pos, wc * (1.0f - wl));
                soft_bin_circular(v + 12, 12, pos, wc * wl);
            }
        }
        for (int i = 0; i < 28; i++)
            v[i] = sqrtf(v[i] / (CQ * CQ));
    }
    { /* edge orientations: central differences of the lightly blurred grey, 3x3 cells */
        float *v = emb + block_off(B_EDGES);
        blur(g, gb, tmp, EDGE_BLUR);
        for (int y = 1; y < SQ - 1; y++)
            for (int x = 1; x < SQ - 1; x++) {
                float gx = gb[y * SQ + x + 1] - gb[y * SQ + x - 1];
                float gy = gb[(y + 1) * SQ + x] - gb[(y - 1) * SQ + x];
                float m = sqrtf(gx * gx + gy * gy);
                if (m < 1.0f)
                    continue;
                float th = atan2f(gy, gx);
                th = th < 0 ? th + (float)M_PI : th;
                th = th >= (float)M_PI ? 0 : th;
                int cell = (y * 3 / SQ) * 3 + x * 3 / SQ;
                soft_bin_circular(v + cell * 8, 8, th / (float)M_PI * 8.0f - 0.5f, m);
            }
        double total = 0;
        for (int i = 0; i < 72; i++)
            total += v[i];
        float mean = 0;
        for (int i = 0; i < 72; i++)
            mean += (v[i] = total > 0 ? sqrtf((float)(v[i] / total)) : 0) / 72;
        for (int i = 0; i < 72; i++)
            v[i] -= mean;
    }
    blur(g, gb, tmp, STRUCT_BLUR);
    { /* DCT of the central 70%, sampled 32x32; the hash from the same coefficients */
        float g32[32 * 32], d[9][9];
        sample_centre(gb, DCT_SPAN, 32, g32);
        dct32(g32, d);
        f->phash = phash_of(d);
        float *v = emb + block_off(B_DCT);
        int k = 0;
        for (int s = 1; s <= 8; s++)
            for (int u = 0; u <= s; u++)
                v[k++] = d[u][s - u];
    }
    { /* centre: pixels 32..95 of each side, 8x8 cells of 8x8 */
        float *v = emb + block_off(B_CENTRE);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                v[(y / 8) * 8 + x / 8] += gb[(y + 32) * SQ + x + 32] / 64;
        float mean = 0;
        for (int i = 0; i < 64; i++)
            mean += v[i] / 64;
        for (int i = 0; i < 64; i++)
            v[i] -= mean;
    }
    for (int b = 0; b < B__COUNT; b++)
        block_normalise(emb + block_off(b), block_dim[b], block_eps[b], block_weight[b]);
    block_normalise(emb, IMAGEPROC_DIM, 0.0f, 1.0f);

    dominant_colors(c64, CQ * CQ, f);
    free(g);
    free(c64);
    free(lab);
}

/* Means over the (2r+1)^2 window around each pixel (clamped at the borders) from a summed-area
 * table `sat` of (w+1) x (h+1) entries. */
static double box_mean(const double *sat, int w, int h, int x, int y, int r)
{
    int x0 = x - r < 0 ? 0 : x - r, y0 = y - r < 0 ? 0 : y - r;
    int x1 = x + r + 1 > w ? w : x + r + 1, y1 = y + r + 1 > h ? h : y + r + 1;
    size_t W = (size_t)w + 1;
    double s = sat[y1 * W + x1] - sat[y0 * W + x1] - sat[y1 * W + x0] + sat[y0 * W + x0];
    return s / ((double)(x1 - x0) * (y1 - y0));
}

/* Grows (or, with `all`, shrinks) a mask by r px: a max (min) over a (2r+1)^2 square, separably. */
static void morph(unsigned char *m, int w, int h, int r, bool all)
{
    unsigned char *tmp = malloc((size_t)w * h);
    if (!tmp)
        abort();
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = all;
            for (int i = x - r; i <= x + r; i++) {
                int s = i < 0 || i >= w ? !all : m[(size_t)y * w + i]; /* outside: not ink */
                v = all ? v && s : v || s;
            }
            tmp[(size_t)y * w + x] = (unsigned char)v;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = all;
            for (int i = y - r; i <= y + r; i++) {
                int s = i < 0 || i >= h ? !all : tmp[(size_t)i * w + x];
                v = all ? v && s : v || s;
            }
            m[(size_t)y * w + x] = (unsigned char)v;
        }
    free(tmp);
}

/* "text-like": thin dark strokes on a flat light background, the look of a page, a form or a
 * floor plan. On the grey image: ink is a pixel 25 below the mean of its 15x15 window; paper is
 * what lies over 3 px from any ink. It is text-like when 3-35% of the pixels are ink, at least 30%
 * are paper, the paper is light (mean >= 120) and flat (>= 75% of it with a 7x7 standard deviation
 * under 6), and the strokes are thin (<= 15% of ink pixels have only ink around them). A
 * heuristic: docs/images.md says what it was checked on. */
static bool text_like(const float *g, int w, int h)
{
    if (w < 32 || h < 32)
        return false;
    size_t W = (size_t)w + 1, n = (size_t)w * h;
    double *sat = calloc(W * (h + 1) * 2, sizeof *sat), *sat2 = sat + W * (h + 1);
    unsigned char *ink = malloc(n), *near = malloc(n), *core = malloc(n);
    if (!sat || !ink || !near || !core)
        abort();
    for (int y = 0; y < h; y++) {
        double row = 0, row2 = 0;
        for (int x = 0; x < w; x++) {
            double v = g[(size_t)y * w + x];
            row += v, row2 += v * v;
            sat[(y + 1) * W + x + 1] = sat[y * W + x + 1] + row;
            sat2[(y + 1) * W + x + 1] = sat2[y * W + x + 1] + row2;
        }
    }
    size_t nink = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            ink[i] = g[i] < box_mean(sat, w, h, x, y, 7) - 25.0;
            nink += ink[i];
        }
    memcpy(near, ink, n);
    morph(near, w, h, 3, false);
    memcpy(core, ink, n);
    morph(core, w, h, 1, true);
    size_t npaper = 0, nflat = 0, ncore = 0;
    double paper_sum = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            ncore += core[i];
            if (near[i])
                continue;
            npaper++;
            paper_sum += g[i];
            double m = box_mean(sat, w, h, x, y, 3), m2 = box_mean(sat2, w, h, x, y, 3);
            nflat += m2 - m * m < 36.0;
        }
    bool yes = nink * 100 >= n * 3 && nink * 100 <= n * 35 && npaper * 10 >= n * 3 && paper_sum >= 120.0 * npaper &&
               nflat * 4 >= npaper * 3 && ncore * 100 <= nink * 15;
    free(sat), free(ink), free(near), free(core);
    return yes;
}

/* Brightness, sharpness and the text-like test, from the grey image fitting SHARP_SIDE px. */
static void quality(const unsigned char *rgb, int w, int h, image_features_t *f, bool *textlike)
{
    float *g = malloc(sizeof(float) * (size_t)w * h);
    if (!g)
        abort();
    double sum = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        g[i] = luma(rgb + i * 3);
        sum += g[i];
    }
    f->brightness = sum / ((double)w * h);
    double s = 0, s2 = 0;
    long n = 0;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            const float *p = g + (size_t)y * w + x;
            double lap = p[-1] + p[1] + p[-w] + p[w] - 4.0 * p[0];
            s += lap, s2 += lap * lap, n++;
        }
    f->sharpness = n ? s2 / n - (s / n) * (s / n) : 0;
    *textlike = text_like(g, w, h);
    free(g);
}

static void add_label(image_features_t *f, const char *label)
{
    if (f->nlabels < IMAGEPROC_MAX_LABELS)
        f->labels[f->nlabels++] = label;
}

bool imageproc_process(img_type_t t, const void *data, size_t len, image_features_t *f, buf_t *thumb, buf_t *medium,
                       err_t *e)
{
    if (!imageproc_init(e))
        return false;
    pthread_once(&tables_once, init_tables);
    memset(f, 0, sizeof *f);
    VipsObject *ctx = VIPS_OBJECT(vips_image_new());
    VipsImage *base = NULL;
    int w = 0, h = 0;
    unsigned char *sq = NULL, *sharp = NULL;
    bool ok = make_base(ctx, t, data, len, &base, &w, &h, e);
    if (ok && medium)
        ok = write_variant(ctx, base, w, h, IMAGEPROC_MEDIUM, medium, e);
    if (ok && thumb)
        ok = write_variant(ctx, base, w, h, IMAGEPROC_THUMB, thumb, e);
    int sw = 0, sh = 0;
    if (ok) {
        /* the base is a 3-band uchar memory image: its pixels are addressable */
        int bw = vips_image_get_width(base), bh = vips_image_get_height(base);
        const unsigned char *px = VIPS_IMAGE_ADDR(base, 0, 0);
        fit(bw, bh, SHARP_SIDE, &sw, &sh);
        sq = malloc(SQ * SQ * 3);
        sharp = malloc((size_t)sw * sh * 3);
        if (!sq || !sharp)
            abort();
        resample(px, bw, bh, VIPS_IMAGE_SIZEOF_LINE(base), sharp, sw, sh);
        resample(sharp, sw, sh, (size_t)sw * 3, sq, SQ, SQ);
    }
    if (ok) {
        f->width = w;
        f->height = h;
        bool grayscale, textlike;
        describe(sq, f, &grayscale);
        quality(sharp, sw, sh, f, &textlike);
        f->too_dark = f->brightness < DARK_BRIGHTNESS;
        f->blurry = f->sharpness < BLURRY_SHARPNESS;
        add_label(f, w * 20 > h * 21 ? "landscape" : h * 20 > w * 21 ? "portrait" : "square");
        if (grayscale)
            add_label(f, "grayscale");
        if (f->too_dark)
            add_label(f, "dark");
        if (f->blurry)
            add_label(f, "blurry");
        if (f->ncolors > 0)
            add_label(f, color_name(f->colors[0]));
        if (textlike)
            add_label(f, "text-like");
    }
    free(sq);
    free(sharp);
    g_object_unref(ctx);
    return ok;
}

/* Public original ----------------------------------------------------------------------------- */

/* libvips 8.14's WebP saver writes EXIF (rebuilt from the image's fields) and XMP/ICC chunks even
 * with strip (libvips issue 3340), so the container is filtered here: every EXIF, XMP and ICCP
 * chunk is dropped, the VP8X flags that announce them are cleared and the RIFF size is fixed. The
 * bytes are our own encoder's, but every length is still checked. */
static bool webp_strip(buf_t *b)
{
    unsigned char *p = (unsigned char *)b->data;
    size_t n = b->len;
    if (n < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WEBP", 4) != 0)
        return false;
    size_t in = 12, out = 12;
    while (in < n) {
        if (n - in < 8)
            return false;
        size_t size = le32(p + in + 4), whole = 8 + size + (size & 1);
        if (size > n - in - 8 || whole > n - in)
            return false;
        bool drop = memcmp(p + in, "EXIF", 4) == 0 || memcmp(p + in, "XMP ", 4) == 0 || memcmp(p + in, "ICCP", 4) == 0;
        if (!drop) {
            memmove(p + out, p + in, whole);
            if (memcmp(p + out, "VP8X", 4) == 0 && size >= 1)
                p[out + 8] &= (unsigned char)~(0x20 | 0x08 | 0x04); /* ICC, EXIF, XMP */
            out += whole;
        }
        in += whole;
    }
    uint32_t riff = (uint32_t)(out - 8);
    p[4] = (unsigned char)riff, p[5] = (unsigned char)(riff >> 8), p[6] = (unsigned char)(riff >> 16),
    p[7] = (unsigned char)(riff >> 24);
    b->len = out;
    return true;
}

bool imageproc_public_original(img_type_t t, const void *data, size_t len, buf_t *out, err_t *e)
{
    if (!imageproc_init(e))
        return false;
    VipsObject *ctx = VIPS_OBJECT(vips_image_new());
    VipsImage **tt = (VipsImage **)vips_object_local_array(ctx, 2);
    loaded_t ld;
    bool ok = load(ctx, t, data, len, 0, VIPS_ACCESS_SEQUENTIAL, &ld, e);
    if (ok && ld.orientation > 2) {
        /* rotations and vertical flips read the picture out of order: load it for random access
         * (libvips decodes it into memory, or a temporary file past its disc threshold) */
        ok = load(ctx, t, data, len, 0, VIPS_ACCESS_RANDOM, &ld, e);
    }
    VipsImage *x = NULL;
    if (ok)
        ok = to_srgb(ctx, ld.img, true, &x, e);
    if (ok && ld.orientation != 1) {
        ok = vips_autorot(x, &tt[0], NULL) == 0 || vfail(e, ERR_VALIDATION, UNDECODABLE);
        x = tt[0];
    }
    void *bytes = NULL;
    size_t n = 0;
    if (ok) {
        int rc = -1;
        switch (t) {
        case IMG_JPEG:
            rc = vips_jpegsave_buffer(x, &bytes, &n, "Q", ORIGINAL_Q, "strip", TRUE, "optimize_coding", TRUE, NULL);
            break;
        case IMG_PNG: rc = vips_pngsave_buffer(x, &bytes, &n, "strip", TRUE, "compression", 6, NULL); break;
        case IMG_WEBP: {
            bool lossless = len >= 16 && memcmp((const char *)data + 12, "VP8L", 4) == 0;
            rc = vips_webpsave_buffer(x, &bytes, &n, "strip", TRUE, "Q", ORIGINAL_Q, "lossless", lossless, NULL);
            break;
        }
        default: break;
        }
        /* a decoding error surfaces here, when the pixels are first read */
        ok = rc == 0 || vfail(e, ERR_VALIDATION, UNDECODABLE);
    }
    if (ok) {
        buf_reset(out);
        buf_append(out, bytes, n);
        if (t == IMG_WEBP && !webp_strip(out))
            ok = err_set(e, ERR_INTERNAL, "WebP encoding produced an unreadable container");
    }
    g_free(bytes);
    g_object_unref(ctx);
    return ok;
}

/* Comparison ---------------------------------------------------------------------------------- */

int imageproc_hamming(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

float imageproc_similarity(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < IMAGEPROC_DIM; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

/* Cosine of one block of two embeddings; false when either block is all zeros (a picture without
 * any structure: exactly flat grey). */
static bool block_cosine(const float *a, const float *b, int block, float *cosine_out)
{
    int o = block_off(block), n = block_dim[block];
    double ab = 0, aa = 0, bb = 0;
    for (int i = o; i < o + n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    if (aa < 1e-20 || bb < 1e-20)
        return false;
    *cosine_out = (float)(ab / sqrt(aa * bb));
    return true;
}

/* Candidates: hashes at most IMAGEPROC_DUP_RADIUS bits apart. Decision: the structure of the grey
 * image agrees, i.e. the mean of the cosines of the DCT and centre blocks (both brightness- and
 * contrast-free) is >= DUP_STRUCTURE. Pictures without structure (flat) are duplicates only of
 * each other, when their whole embeddings (colour, layout) agree to DUP_FLAT_SIMILARITY. */
bool imageproc_near_duplicate(const image_features_t *a, const image_features_t *b)
{
    if (imageproc_hamming(a->phash, b->phash) > IMAGEPROC_DUP_RADIUS)
        return false;
    float dct, centre;
    if (!block_cosine(a->embedding, b->embedding, B_DCT, &dct) ||
        !block_cosine(a->embedding, b->embedding, B_CENTRE, &centre)) {
        bool flat_a = !block_cosine(a->embedding, a->embedding, B_DCT, &dct) ||
                      !block_cosine(a->embedding, a->embedding, B_CENTRE, &dct);
        bool flat_b = !block_cosine(b->embedding, b->embedding, B_DCT, &dct) ||
                      !block_cosine(b->embedding, b->embedding, B_CENTRE, &dct);
        return flat_a && flat_b && imageproc_similarity(a->embedding, b->embedding) >= DUP_FLAT_SIMILARITY;
    }
    return (dct + centre) / 2 >= DUP_STRUCTURE;
}
