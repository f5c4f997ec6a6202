/* fuzz_imageproc: the photo pipeline (domain/imageproc.c) on arbitrary bytes: sniffing, our own
 * header parsers, then libvips' JPEG/PNG/WebP loaders behind them, the variants, the features and
 * the public original.
 *
 * The one idea: the header is the gate, so check what it promises. A type that is not sniffed has
 * no header; a header that parses gives sides >= 1 within IMAGEPROC_MAX_PIXELS; pictures over a
 * small cap (FUZZ_MAX_PIXELS, so that a run stays fast) stop there. Below it, imageproc_process
 * either refuses with a validation error or returns features that hold together (the header's
 * size, oriented; a finite unit embedding; 1..5 colours; labels) and two JPEG variants that fit
 * their boxes; the public original, when made, has the input's type. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domain/imageproc.h"

#define FUZZ_MAX_PIXELS (256 * 256)

static void check_variant(const buf_t *v, int box)
{
    int w, h;
    err_t e;
    err_clear(&e);
    if (imageproc_sniff(v->data, v->len) != IMG_JPEG || !imageproc_header(IMG_JPEG, v->data, v->len, &w, &h, &e))
        __builtin_trap();
    if (w < 1 || h < 1 || w > box || h > box)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    err_t e;
    err_clear(&e);
    if (!ready) {
        if (!imageproc_init(&e))
            __builtin_trap();
        ready = true;
    }
    img_type_t t = imageproc_sniff(data, size);
    int w = 0, h = 0;
    if (t == IMG_NONE) {
        for (img_type_t k = IMG_JPEG; k <= IMG_WEBP; k++)
            if (imageproc_header(k, data, size, &w, &h, &e))
                __builtin_trap(); /* a header for bytes that are not of its type */
        return 0;
    }
    if (!imageproc_header(t, data, size, &w, &h, &e)) {
        if (e.code != ERR_VALIDATION)
            __builtin_trap();
        return 0;
    }
    if (w < 1 || h < 1 || (int64_t)w * h > IMAGEPROC_MAX_PIXELS)
        __builtin_trap();
    if ((int64_t)w * h > FUZZ_MAX_PIXELS)
        return 0;

    image_features_t f;
    buf_t thumb, medium, original;
    buf_init(&thumb), buf_init(&medium), buf_init(&original);
    err_clear(&e);
    if (imageproc_process(t, data, size, &f, &thumb, &medium, &e)) {
        bool swapped = f.width == h && f.height == w;
        if (!(f.width == w && f.height == h) && !swapped)
            __builtin_trap();
        double norm = 0;
        for (int i = 0; i < IMAGEPROC_DIM; i++) {
            if (!isfinite(f.embedding[i]))
                __builtin_trap();
            norm += (double)f.embedding[i] * f.embedding[i];
        }
        if (norm > 0 && fabs(norm - 1.0) > 1e-3)
            __builtin_trap();
        if (f.ncolors < 1 || f.ncolors > IMAGEPROC_MAX_COLORS || f.nlabels < 1 || f.nlabels > IMAGEPROC_MAX_LABELS)
            __builtin_trap();
        if (!(f.brightness >= 0 && f.brightness <= 255) || !(f.sharpness >= 0) || f.phash >> 63)
            __builtin_trap();
        if (!imageproc_near_duplicate(&f, &f))
            __builtin_trap();
        check_variant(&thumb, IMAGEPROC_THUMB);
        check_variant(&medium, IMAGEPROC_MEDIUM);
        err_clear(&e);
        if (imageproc_public_original(t, data, size, &original, &e)) {
            if (imageproc_sniff(original.data, original.len) != t)
                __builtin_trap();
        } else if (e.code != ERR_VALIDATION) {
            __builtin_trap();
        }
    } else if (e.code != ERR_VALIDATION) {
        __builtin_trap();
    }
    buf_free(&thumb), buf_free(&medium), buf_free(&original);
    return 0;
}
