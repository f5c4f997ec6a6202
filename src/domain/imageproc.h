/* imageproc: what hearth reads from a listing photo (libvips; DESIGN.md).
 *
 * Untrusted bytes are handled in this order: the type is sniffed from the magic bytes (JPEG, PNG,
 * WebP, nothing else); the header alone gives the dimensions, so that a picture of more than
 * IMAGEPROC_MAX_PIXELS is refused before anything is decoded; then only that format's loader
 * decodes it (never libvips' generic loader, and vips_block_untrusted_set is on). The EXIF
 * orientation is applied, and every variant is written without metadata (no EXIF, no GPS).
 *
 * Features: a perceptual hash (the signs of the 8x8 low-frequency DCT block, against their median,
 * of a 32x32 grey image of the central 70% of the picture; 63 bits used, bit 63 is 0), an
 * embedding of IMAGEPROC_DIM floats (L2-normalised; the descriptor is documented in imageproc.c
 * and docs/images.md), the dominant colours, brightness and sharpness with their quality flags,
 * and labels derived from those (simple rules, not a learned classifier). Two photos are
 * near-duplicates when imageproc_near_duplicate says so: a hash within IMAGEPROC_DUP_RADIUS bits
 * finds the candidates (an index can search that radius), and the structure parts of the
 * embeddings decide.
 *
 * Threads: after imageproc_init every function may be called from any number of threads at once.
 * Each call uses one libvips worker (vips_concurrency_set(1)) and no operation cache. */
#ifndef HEARTH_IMAGEPROC_H
#define HEARTH_IMAGEPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/buf.h"
#include "../base/error.h"

#define IMAGEPROC_MAX_PIXELS 50000000LL
#define IMAGEPROC_DIM 256          /* embedding dimension */
#define IMAGEPROC_THUMB 320        /* longest side of the small variant, px */
#define IMAGEPROC_MEDIUM 1024      /* and of the medium one */
#define IMAGEPROC_MAX_COLORS 5
#define IMAGEPROC_MAX_LABELS 8

typedef enum { IMG_NONE = 0, IMG_JPEG, IMG_PNG, IMG_WEBP } img_type_t;

/* Once per process, before any other call (vips_init, untrusted loaders blocked, one libvips
 * worker per pipeline, no operation cache); calling it again is harmless. */
bool imageproc_init(err_t *e);

/* The type the first bytes say (at least 12 are needed); IMG_NONE for anything else. */
img_type_t imageproc_sniff(const void *head, size_t len);
const char *imageproc_mime(img_type_t t); /* "image/jpeg", ... */
const char *imageproc_ext(img_type_t t);  /* "jpg", "png", "webp" */

/* Width and height as stored (before any EXIF orientation) from the header only, by our own
 * bounds-checked parser, nothing decoded; ERR_VALIDATION when the bytes are not of type t, when the
 * header does not parse, or when the picture has more than IMAGEPROC_MAX_PIXELS pixels. */
bool imageproc_header(img_type_t t, const void *data, size_t len, int *width, int *height, err_t *e);

typedef struct image_features {
    int width, height;   /* as displayed: after the EXIF orientation */
    uint64_t phash;
    float embedding[IMAGEPROC_DIM];
    uint32_t colors[IMAGEPROC_MAX_COLORS]; /* 0xRRGGBB, the most common first */
    int ncolors;
    double brightness;   /* mean luma, 0-255 */
    double sharpness;    /* variance of the Laplacian of the 512 px grey image */
    bool too_dark, blurry;
    const char *labels[IMAGEPROC_MAX_LABELS]; /* static strings */
    int nlabels;
} image_features_t;

/* Decodes (with t's loader only), orients, and computes the features; with thumb and medium
 * non-NULL, also writes the two JPEG variants (longest side IMAGEPROC_THUMB and IMAGEPROC_MEDIUM,
 * never enlarged, quality 82, alpha flattened onto white, metadata stripped) into them. The
 * features do not depend on whether the variants are asked for. ERR_VALIDATION when the image does
 * not decode (corrupt, truncated: libvips warnings count) or is too large. */
bool imageproc_process(img_type_t t, const void *data, size_t len, image_features_t *f, buf_t *thumb, buf_t *medium,
                       err_t *e);

/* The picture with metadata stripped (EXIF with GPS, XMP, IPTC, ICC) and orientation applied, in
 * its own format and at full size: what the public may fetch as the original. It is re-encoded
 * (JPEG and lossy WebP at quality 90, lossless WebP lossless, PNG losslessly) after conversion to
 * 8-bit sRGB through any non-sRGB profile, so that dropping the profile changes no colour; grey
 * stays grey and alpha is kept. */
bool imageproc_public_original(img_type_t t, const void *data, size_t len, buf_t *out, err_t *e);

#define IMAGEPROC_DUP_RADIUS 16 /* candidates: hashes at most this many bits apart */
int imageproc_hamming(uint64_t a, uint64_t b);
float imageproc_similarity(const float *a, const float *b); /* cosine of two embeddings (-1 .. 1) */
bool imageproc_near_duplicate(const image_features_t *a, const image_features_t *b);

#endif
