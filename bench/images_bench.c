/* bench/images_bench.c: the photo pipeline of src/domain/imageproc.c, in process, for
 * bench/images.sh. Two modes:
 *
 *   images_bench dups PHOTOS_DIR
 *     Each photo of PHOTOS_DIR (*.jpg, *.png, *.webp; the 15 of ../shared/data/photos) and five
 *     copies made here with libvips: "half" (50% resize, each side), "q60" (re-encoded as JPEG
 *     quality 60), "crop" (the centre 94.87% of each side: 10% of the area removed), "rot3"
 *     (rotated 3 degrees about the centre, same frame, corners black), "bright" (every channel
 *     x 1.15, clipped). The copies keep the photo's format (JPEG at quality 92), except q60. Every
 *     image goes through imageproc_process; imageproc_near_duplicate is asked about every pair, and
 *     two images are the same photo exactly when they come from the same file. Prints recall,
 *     precision, the Hamming distances and embedding cosines of true and false pairs, per-copy
 *     recall, the misses and any false match, and a line "dups recall=R precision=P tp= fp= fn=
 *     ...". Then, for information only, harder edits of each photo (25% resize, quality 30, 20%
 *     and 35% of the area cropped, 5 degrees, x 0.8 brightness, a blur, a mirror image) matched
 *     against their original and against every image of the other photos. IMAGES_DUMP=FILE
 *     writes each image's name, version, hash and embedding, one line each.
 *
 *   images_bench throughput PHOTOS_DIR [N] [ROUNDS]
 *     Makes N (50) JPEGs of 1155x866 (1.0 megapixel; crops of the photos at several scales,
 *     quality 85, with an EXIF block: camera, date, orientation 1, GPS position), then runs
 *     imageproc_process on each (both variants and the features) ROUNDS (3) times, one thread.
 *     Prints per round the wall and CPU seconds, and "throughput images_per_cpu_s=X
 *     images_per_wall_s=Y" of the best round; also the features-only rate for reference.
 *     IMAGES_KEEP=DIR keeps the generated JPEGs there.
 *
 * Built by bench/images.sh with gcc against the build's libhearth_core.a (no CMake change). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <vips/vips.h>

#include "base/buf.h"
#include "base/error.h"
#include "domain/imageproc.h"

#define MAX_PHOTOS 64
#define COPIES 6
static const char *const copy_names[COPIES] = {"original", "half", "q60", "crop", "rot3", "bright"};
/* Harder edits, outside the target: how far the rule stretches (INFO only). */
#define STRESS 8
static const char *const stress_names[STRESS] = {"quarter", "q30",  "crop20", "crop35",
                                                 "rot5",    "dark", "blur",   "mirror"};

static void die(const char *what)
{
    char *v = vips_error_buffer_copy();
    fprintf(stderr, "images_bench: %s%s%s\n", what, v && *v ? ": " : "", v ? v : "");
    g_free(v);
    exit(1);
}

static bool read_file(const char *path, buf_t *out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    char chunk[65536];
    size_t n;
    buf_reset(out);
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        buf_append(out, chunk, n);
    bool ok = !ferror(fp);
    fclose(fp);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The photos of dir, sorted by name. */
static int list_photos(const char *dir, char **names)
{
    DIR *d = opendir(dir);
    if (!d)
        die("cannot open the photos directory");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < MAX_PHOTOS) {
        const char *dot = strrchr(de->d_name, '.');
        if (dot && (!strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg") || !strcmp(dot, ".png") || !strcmp(dot, ".webp")))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    return n;
}

/* Decodes trusted local bytes with the loader their type names (as hearth does). */
static VipsImage *decode(const buf_t *b, img_type_t *type)
{
    VipsImage *im = NULL;
    *type = imageproc_sniff(b->data, b->len);
    int rc = -1;
    switch (*type) {
    case IMG_JPEG: rc = vips_jpegload_buffer(b->data, b->len, &im, NULL); break;
    case IMG_PNG: rc = vips_pngload_buffer(b->data, b->len, &im, NULL); break;
    case IMG_WEBP: rc = vips_webpload_buffer(b->data, b->len, &im, NULL); break;
    default: break;
    }
    if (rc != 0)
        die("cannot decode a photo");
    return im;
}

static void encode(VipsImage *im, img_type_t type, int q, buf_t *out)
{
    void *bytes = NULL;
    size_t n = 0;
    int rc;
    if (type == IMG_PNG)
        rc = vips_pngsave_buffer(im, &bytes, &n, NULL);
    else if (type == IMG_WEBP)
        rc = vips_webpsave_buffer(im, &bytes, &n, "Q", q, NULL);
    else
        rc = vips_jpegsave_buffer(im, &bytes, &n, "Q", q, NULL);
    if (rc != 0)
        die("cannot encode a copy");
    buf_reset(out);
    buf_append(out, bytes, n);
    g_free(bytes);
}

/* Copy `kind` of the decoded photo `im` (bytes `orig`, of `type`) into out. */
static void make_copy(const buf_t *orig, VipsImage *im, img_type_t type, int kind, buf_t *out)
{
    int w = vips_image_get_width(im), h = vips_image_get_height(im);
    VipsImage *x = NULL, *y = NULL;
    switch (kind) {
    case 0:
        buf_reset(out);
        buf_append(out, orig->data, orig->len);
        return;
    case 1:
        if (vips_resize(im, &x, 0.5, NULL))
            die("resize");
        encode(x, type, 92, out);
        break;
    case 2: encode(im, IMG_JPEG, 60, out); return;
    case 3: {
        double s = sqrt(0.9); /* 90% of the area stays */
        int cw = (int)lround(w * s), ch = (int)lround(h * s);
        if (vips_crop(im, &x, (w - cw) / 2, (h - ch) / 2, cw, ch, NULL))
            die("crop");
        encode(x, type, 92, out);
        break;
    }
    case 4: {
        if (vips_rotate(im, &y, 3.0, NULL))
            die("rotate");
        int rw = vips_image_get_width(y), rh = vips_image_get_height(y);
        if (vips_crop(y, &x, (rw - w) / 2, (rh - h) / 2, w, h, NULL))
            die("rotate crop");
        encode(x, type, 92, out);
        break;
    }
    case 5: {
        if (vips_linear1(im, &y, 1.15, 0.0, NULL) || vips_cast(y, &x, VIPS_FORMAT_UCHAR, NULL))
            die("brightness");
        encode(x, type, 92, out);
        break;
    }
    case 10: /* quarter: 25% of each side */
        if (vips_resize(im, &x, 0.25, NULL))
            die("resize");
        encode(x, type, 92, out);
        break;
    case 11: encode(im, IMG_JPEG, 30, out); return;
    case 12:
    case 13: {
        double s = sqrt(kind == 12 ? 0.8 : 0.65); /* 20% / 35% of the area removed */
        int cw = (int)lround(w * s), ch = (int)lround(h * s);
        if (vips_crop(im, &x, (w - cw) / 2, (h - ch) / 2, cw, ch, NULL))
            die("crop");
        encode(x, type, 92, out);
        break;
    }
    case 14: {
        if (vips_rotate(im, &y, -5.0, NULL))
            die("rotate");
        int rw = vips_image_get_width(y), rh = vips_image_get_height(y);
        if (vips_crop(y, &x, (rw - w) / 2, (rh - h) / 2, w, h, NULL))
            die("rotate crop");
        encode(x, type, 92, out);
        break;
    }
    case 15:
        if (vips_linear1(im, &y, 0.8, 0.0, NULL) || vips_cast(y, &x, VIPS_FORMAT_UCHAR, NULL))
            die("darken");
        encode(x, type, 92, out);
        break;
    case 16: /* a blur of 0.5% of the longest side */
        if (vips_gaussblur(im, &y, 0.005 * (w > h ? w : h), NULL) || vips_cast(y, &x, VIPS_FORMAT_UCHAR, NULL))
            die("blur");
        encode(x, type, 92, out);
        break;
    case 17:
        if (vips_flip(im, &x, VIPS_DIRECTION_HORIZONTAL, NULL))
            die("mirror");
        encode(x, type, 92, out);
        break;
    default: die("no such copy");
    }
    if (x)
        g_object_unref(x);
    if (y)
        g_object_unref(y);
}

typedef struct item {
    int photo, kind;
    image_features_t f;
} item_t;

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void distribution(const char *label, int *d, int n)
{
    qsort(d, (size_t)n, sizeof *d, cmp_int);
    int hist[9] = {0}; /* 0-4, 5-8, ..., 29-32, >32 */
    for (int i = 0; i < n; i++)
        hist[d[i] <= 4 ? 0 : d[i] > 32 ? 8 : (d[i] - 1) / 4]++;
    printf("   %-12s n=%-5d min %2d  p5 %2d  p50 %2d  p95 %2d  max %2d |", label, n, d[0], d[n * 5 / 100], d[n / 2],
           d[n * 95 / 100], d[n - 1]);
    static const char *const b[9] = {"0-4", "5-8", "9-12", "13-16", "17-20", "21-24", "25-28", "29-32", ">32"};
    for (int i = 0; i < 9; i++)
        printf(" %s:%d", b[i], hist[i]);
    printf("\n");
}

static int dups(const char *dir)
{
    char *names[MAX_PHOTOS];
    int np = list_photos(dir, names);
    if (np < 2)
        die("fewer than two photos");
    item_t *items = calloc((size_t)np * COPIES, sizeof *items);
    int n = 0;
    buf_t orig, copy, thumb, medium;
    buf_init(&orig), buf_init(&copy), buf_init(&thumb), buf_init(&medium);
    const char *dump = getenv("IMAGES_DUMP"); /* every image's features, for offline analysis */
    FILE *df = dump ? fopen(dump, "w") : NULL;
    for (int p = 0; p < np; p++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[p]);
        if (!read_file(path, &orig))
            die("cannot read a photo");
        img_type_t type;
        VipsImage *im = decode(&orig, &type);
        for (int k = 0; k < COPIES; k++) {
            make_copy(&orig, im, type, k, &copy);
            item_t *it = &items[n++];
            it->photo = p, it->kind = k;
            err_t e;
            err_clear(&e);
            img_type_t t = imageproc_sniff(copy.data, copy.len);
            if (!imageproc_process(t, copy.data, copy.len, &it->f, &thumb, &medium, &e)) {
                fprintf(stderr, "images_bench: %s %s: %s\n", names[p], copy_names[k], e.message);
                return 1;
            }
            if (df) {
                fprintf(df, "%s %s %016llx", names[p], copy_names[k], (unsigned long long)it->f.phash);
                for (int i = 0; i < IMAGEPROC_DIM; i++)
                    fprintf(df, " %.6g", it->f.embedding[i]);
                fprintf(df, "\n");
            }
        }
        g_object_unref(im);
    }
    if (df)
        fclose(df);
    printf("   %d photos x %d versions = %d images, %d pairs\n", np, COPIES, n, n * (n - 1) / 2);
    printf("   labels (originals):");
    for (int i = 0; i < n; i += COPIES) {
        printf("\n     %-22s %4dx%-4d bright %5.1f sharp %7.1f colours", names[items[i].photo], items[i].f.width,
               items[i].f.height, items[i].f.brightness, items[i].f.sharpness);
        for (int c = 0; c < items[i].f.ncolors; c++)
            printf(" %06x", items[i].f.colors[c]);
        printf(" |");
        for (int l = 0; l < items[i].f.nlabels; l++)
            printf(" %s", items[i].f.labels[l]);
    }
    printf("\n");

    int npairs = n * (n - 1) / 2;
    int *dt = malloc(sizeof(int) * (size_t)npairs), *df_ = malloc(sizeof(int) * (size_t)npairs);
    int nt = 0, nf = 0, tp = 0, fp = 0, fn = 0, cand_t = 0, cand_f = 0;
    int kind_true[COPIES] = {0}, kind_hit[COPIES] = {0};
    float *ct = malloc(sizeof(float) * (size_t)npairs), *cf = malloc(sizeof(float) * (size_t)npairs);
    printf("   misses (same photo, not matched): Hamming distance, embedding cosine\n");
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            bool same = items[i].photo == items[j].photo;
            int d = imageproc_hamming(items[i].f.phash, items[j].f.phash);
            float s = imageproc_similarity(items[i].f.embedding, items[j].f.embedding);
            bool dup = imageproc_near_duplicate(&items[i].f, &items[j].f);
            if (same) {
                ct[nt] = s;
                dt[nt++] = d;
                cand_t += d <= IMAGEPROC_DUP_RADIUS;
                tp += dup;
                fn += !dup;
                for (int k = 0; k < COPIES; k++)
                    if (items[i].kind == k || items[j].kind == k) {
                        kind_true[k]++;
                        kind_hit[k] += dup;
                    }
                if (!dup)
                    printf("     %-22s %-8s ~ %-8s  %2d  %.3f\n", names[items[i].photo], copy_names[items[i].kind],
                           copy_names[items[j].kind], d, s);
            } else {
                cf[nf] = s;
                df_[nf++] = d;
                cand_f += d <= IMAGEPROC_DUP_RADIUS;
                fp += dup;
                if (dup)
                    printf("     FALSE MATCH %s %s ~ %s %s  %2d  %.3f\n", names[items[i].photo],
                           copy_names[items[i].kind], names[items[j].photo], copy_names[items[j].kind], d, s);
            }
        }
    if (fn == 0)
        printf("     (none)\n");
    qsort(ct, (size_t)nt, sizeof *ct, cmp_float), qsort(cf, (size_t)nf, sizeof *cf, cmp_float);
    printf("   embedding cosine: same photo min %.3f p5 %.3f p50 %.3f | "
           "different p50 %.3f p95 %.3f p99 %.3f max %.3f\n",
           ct[0], ct[nt * 5 / 100], ct[nt / 2], cf[nf / 2], cf[nf * 95 / 100], cf[nf * 99 / 100], cf[nf - 1]);
    printf("   pHash Hamming distance (64-bit hash, 63 bits used):\n");
    distribution("same photo", dt, nt);
    distribution("different", df_, nf);
    printf("   candidates within radius %d: %d of %d same-photo pairs, %d of %d different pairs\n",
           IMAGEPROC_DUP_RADIUS, cand_t, nt, cand_f, nf);
    printf("   recall by version (pairs that include it):");
    for (int k = 0; k < COPIES; k++)
        printf(" %s %d/%d", copy_names[k], kind_hit[k], kind_true[k]);
    printf("\n");
    double recall = nt ? (double)tp / nt : 0, precision = tp + fp ? (double)tp / (tp + fp) : 1;
    printf("dups recall=%.4f precision=%.4f tp=%d fp=%d fn=%d true_pairs=%d pairs=%d radius=%d\n", recall, precision,
           tp, fp, fn, nt, npairs, IMAGEPROC_DUP_RADIUS);

    /* stress copies: matched to their own photo's original? to any version of another photo? */
    printf("   harder edits (INFO, not in the target): matched to their original | "
           "false matches with the %d other-photo images\n",
           n - COPIES);
    int s_hit[STRESS] = {0}, s_false[STRESS] = {0};
    double s_sharp[STRESS] = {0}, blur_min = 1e30, blur_max = 0;
    int blur_flagged = 0;
    for (int p = 0; p < np; p++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[p]);
        if (!read_file(path, &orig))
            die("cannot read a photo");
        img_type_t type;
        VipsImage *im = decode(&orig, &type);
        for (int k = 0; k < STRESS; k++) {
            make_copy(&orig, im, type, 10 + k, &copy);
            image_features_t f;
            err_t e;
            err_clear(&e);
            if (!imageproc_process(imageproc_sniff(copy.data, copy.len), copy.data, copy.len, &f, NULL, NULL, &e))
                die(e.message);
            s_hit[k] += imageproc_near_duplicate(&f, &items[p * COPIES].f);
            s_sharp[k] += f.sharpness / items[p * COPIES].f.sharpness / np;
            if (k == 6) {
                blur_min = fmin(blur_min, f.sharpness), blur_max = fmax(blur_max, f.sharpness);
                blur_flagged += f.blurry;
            }
            for (int i = 0; i < n; i++)
                if (items[i].photo != p && imageproc_near_duplicate(&f, &items[i].f))
                    s_false[k]++;
        }
        g_object_unref(im);
    }
    printf("    ");
    for (int k = 0; k < STRESS; k++)
        printf(" %s %d/%d|%d", stress_names[k], s_hit[k], np, s_false[k]);
    printf("\n     blurred copies: sharpness %.1f .. %.1f (%.3f of their original's on average), "
           "%d of %d flagged blurry\n",
           blur_min, blur_max, s_sharp[6], blur_flagged, np);
    for (int p = 0; p < np; p++)
        free(names[p]);
    free(items), free(dt), free(df_), free(ct), free(cf);
    buf_free(&orig), buf_free(&copy), buf_free(&thumb), buf_free(&medium);
    return 0;
}

/* A little-endian EXIF block ("Exif\0\0" + TIFF): IFD0 with Make, Model, Orientation 1, DateTime
 * and a GPS IFD (latitude, longitude), as a phone writes (minus the maker notes). */
static size_t exif_block(unsigned char *b, int seq)
{
    memset(b, 0, 512);
    memcpy(b, "Exif\0\0II*\0\x08\0\0\0", 14);
    unsigned char *t = b + 6; /* TIFF offsets are from here */
    size_t data = 8 + 2 + 5 * 12 + 4 + 2 + 4 * 12 + 4; /* after both IFDs */
#define PUT16(o, v) (t[(o)] = (unsigned char)((v) & 255), t[(o) + 1] = (unsigned char)((v) >> 8 & 255))
#define PUT32(o, v) (PUT16((o), (v) & 0xFFFF), PUT16((o) + 2, (uint32_t)(v) >> 16))
    size_t o = 8;
    PUT16(o, 5), o += 2;
    char date[20];
    snprintf(date, sizeof date, "2026:11:%02d 12:00:00", 1 + seq % 28);
    struct {
        int tag, type;
        const char *s;
        uint32_t v;
    } e0[5] = {{0x010F, 2, "HearthCam", 0}, {0x0110, 2, "Bench 1", 0}, {0x0112, 3, NULL, 1}, {0x0132, 2, date, 0},
               {0x8825, 4, NULL, 8 + 2 + 5 * 12 + 4}};
    for (int i = 0; i < 5; i++, o += 12) {
        PUT16(o, e0[i].tag), PUT16(o + 2, e0[i].type);
        if (e0[i].s) {
            size_t len = strlen(e0[i].s) + 1;
            PUT32(o + 4, len);
            if (len <= 4) {
                memcpy(t + o + 8, e0[i].s, len);
            } else {
                PUT32(o + 8, data);
                memcpy(t + data, e0[i].s, len);
                data += len + (len & 1);
            }
        } else {
            PUT32(o + 4, 1);
            if (e0[i].type == 3)
                PUT16(o + 8, e0[i].v);
            else
                PUT32(o + 8, e0[i].v);
        }
    }
    PUT32(o, 0), o += 4; /* no IFD1 */
    PUT16(o, 4), o += 2;
    uint32_t lat[6] = {42, 1, 2, 1, (uint32_t)(3000 + seq * 7), 100}, lon[6] = {93, 1, 37, 1, 1234, 100};
    for (int i = 0; i < 4; i++, o += 12) {
        PUT16(o, i + 1);
        if (i % 2 == 0) { /* LatitudeRef "N", LongitudeRef "W" */
            PUT16(o + 2, 2), PUT32(o + 4, 2);
            t[o + 8] = i == 0 ? 'N' : 'W';
        } else {
            PUT16(o + 2, 5), PUT32(o + 4, 3), PUT32(o + 8, data);
            const uint32_t *r = i == 1 ? lat : lon;
            for (int k = 0; k < 6; k++)
                PUT32(data + 4 * k, r[k]);
            data += 24;
        }
    }
    PUT32(o, 0);
#undef PUT16
#undef PUT32
    return 6 + data;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int throughput(const char *dir, int n, int rounds)
{
    char *names[MAX_PHOTOS];
    int np = list_photos(dir, names);
    if (np < 1)
        die("no photos");
    enum { W = 1155, H = 866 };
    buf_t *jpegs = calloc((size_t)n, sizeof *jpegs);
    buf_t orig;
    buf_init(&orig);
    size_t total = 0;
    unsigned char exif[512];
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i % np]);
        if (!read_file(path, &orig))
            die("cannot read a photo");
        img_type_t type;
        VipsImage *im = decode(&orig, &type), *rgb = NULL, *big = NULL, *cut = NULL, *out = NULL;
        int w = vips_image_get_width(im), h = vips_image_get_height(im);
        /* cover W x H, zoomed a little more on each pass over the photos, at a varying offset */
        double scale = fmax((double)W / w, (double)H / h) * (1.0 + 0.15 * (i / np));
        if (vips_colourspace(im, &rgb, VIPS_INTERPRETATION_sRGB, NULL) || vips_resize(rgb, &big, scale, NULL))
            die("resize");
        int bw = vips_image_get_width(big), bh = vips_image_get_height(big);
        int left = bw > W ? (int)((bw - W) * ((i * 37) % 100) / 100) : 0;
        int top = bh > H ? (int)((bh - H) * ((i * 53) % 100) / 100) : 0;
        if (vips_crop(big, &cut, left, top, W < bw ? W : bw, H < bh ? H : bh, NULL) || vips_copy(cut, &out, NULL))
            die("crop");
        size_t elen = exif_block(exif, i);
        vips_image_set_blob_copy(out, VIPS_META_EXIF_NAME, exif, elen);
        buf_init(&jpegs[i]);
        encode(out, IMG_JPEG, 85, &jpegs[i]);
        total += jpegs[i].len;
        const char *keep = getenv("IMAGES_KEEP"); /* a directory to keep the generated JPEGs in */
        if (keep) {
            snprintf(path, sizeof path, "%s/tput_%02d.jpg", keep, i);
            FILE *fp = fopen(path, "wb");
            if (!fp || fwrite(jpegs[i].data, 1, jpegs[i].len, fp) != jpegs[i].len)
                die("cannot write to IMAGES_KEEP");
            fclose(fp);
        }
        g_object_unref(out), g_object_unref(cut), g_object_unref(big), g_object_unref(rgb), g_object_unref(im);
    }
    image_features_t f;
    err_t e;
    err_clear(&e);
    int cw, ch;
    if (!imageproc_header(IMG_JPEG, jpegs[0].data, jpegs[0].len, &cw, &ch, &e))
        die(e.message);
    printf("   %d JPEGs of %dx%d (%.2f MP), quality 85, with EXIF (GPS); %.0f kB on average\n", n, cw, ch,
           cw * ch / 1e6, total / 1024.0 / n);
    buf_t thumb, medium;
    buf_init(&thumb), buf_init(&medium);
    size_t tbytes = 0, mbytes = 0;
    double best_cpu = 1e30, best_wall = 1e30;
    for (int r = 0; r < rounds; r++) {
        double w0 = now_s(), c0 = cpu_s();
        for (int i = 0; i < n; i++) {
            if (!imageproc_process(IMG_JPEG, jpegs[i].data, jpegs[i].len, &f, &thumb, &medium, &e))
                die(e.message);
            if (r == 0)
                tbytes += thumb.len, mbytes += medium.len;
        }
        double wall = now_s() - w0, cpu = cpu_s() - c0;
        printf("   round %d: %d images in %.3f s wall, %.3f s CPU: %.1f images/s per CPU-second, %.1f images/s wall\n",
               r + 1, n, wall, cpu, n / cpu, n / wall);
        if (cpu < best_cpu)
            best_cpu = cpu, best_wall = wall;
    }
    printf("   variants: thumb %.1f kB, medium %.1f kB on average (JPEG quality 82, no metadata)\n",
           tbytes / 1024.0 / n, mbytes / 1024.0 / n);
    double c0 = cpu_s();
    for (int i = 0; i < n; i++)
        if (!imageproc_process(IMG_JPEG, jpegs[i].data, jpegs[i].len, &f, NULL, NULL, &e))
            die(e.message);
    double fonly = cpu_s() - c0;
    printf("   features only (no variants written): %.1f images/s per CPU-second\n", n / fonly);
    printf("throughput images_per_cpu_s=%.1f images_per_wall_s=%.1f n=%d\n", n / best_cpu, n / best_wall, n);
    for (int i = 0; i < n; i++)
        buf_free(&jpegs[i]);
    free(jpegs);
    buf_free(&orig), buf_free(&thumb), buf_free(&medium);
    for (int p = 0; p < np; p++)
        free(names[p]);
    return 0;
}

int main(int argc, char **argv)
{
    err_t e;
    err_clear(&e);
    if (argc < 3) {
        fprintf(stderr, "usage: images_bench dups|throughput PHOTOS_DIR [N] [ROUNDS]\n");
        return 2;
    }
    if (!imageproc_init(&e))
        die(e.message);
    int rc;
    if (!strcmp(argv[1], "dups"))
        rc = dups(argv[2]);
    else if (!strcmp(argv[1], "throughput"))
        rc = throughput(argv[2], argc > 3 ? atoi(argv[3]) : 50, argc > 4 ? atoi(argv[4]) : 3);
    else
        rc = 2;
    vips_shutdown();
    return rc;
}
