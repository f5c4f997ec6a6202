/* fuzz_hnsw_load: hnsw_load (infra/hnsw.c) over arbitrary bytes. A damaged or hostile index file
 * must be refused with an error, never read out of bounds, and an index that loads must be safe to
 * search, change and save.
 *
 * The one idea: a checksum guards the file, so random bytes rarely get past it and the checks
 * behind it would go untested. Each input is therefore loaded three ways: as it is; with its last
 * 8 bytes replaced by the right checksum of the rest; and as a list of edits (3 bytes each: a
 * 16-bit offset and a byte to store) applied to a small valid index file made at start-up, checksum
 * fixed. The last two reach every count, level, link and vector check with bytes the fuzzer
 * chooses. A refusal must be ERR_INTERNAL with a message; an index that loads must answer
 * searches (with and without a filter) with at most k distinct results, best first, take an add
 * and a remove, save, and load again with the same count. A failed check traps. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "infra/hnsw.h"

static int mem_fd = -1;
static char mem_path[64];  /* /proc/self/fd/N of a memfd: the bytes under test */
static char dir[64];       /* where saves go */
static char save_path[96];
static uint8_t *valid;     /* a valid index file */
static size_t nvalid;

static void cleanup(void)
{
    unlink(save_path);
    rmdir(dir);
}

static void init(void)
{
    mem_fd = memfd_create("hnsw-fuzz", MFD_CLOEXEC);
    if (mem_fd < 0)
        __builtin_trap();
    snprintf(mem_path, sizeof mem_path, "/proc/self/fd/%d", mem_fd);
    snprintf(dir, sizeof dir, "/tmp/hearth-fuzz-hnsw-XXXXXX");
    if (!mkdtemp(dir))
        __builtin_trap();
    snprintf(save_path, sizeof save_path, "%s/x.hnsw", dir);
    atexit(cleanup);

    /* 40 vectors of dimension 4, M = 2: upper layers, a deleted node and a replaced one */
    hnsw_t *h = hnsw_new(4, 2, 8, 1);
    uint64_t s = 7;
    for (int i = 0; i < 40; i++) {
        float v[4];
        for (int j = 0; j < 4; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            v[j] = (float)((int)(s >> 40) % 1000 - 500);
        }
        if (!hnsw_add(h, i % 37, v))
            __builtin_trap();
    }
    hnsw_remove(h, 5);
    err_t e;
    err_clear(&e);
    if (!hnsw_save(h, save_path, &e))
        __builtin_trap();
    hnsw_free(h);
    FILE *f = fopen(save_path, "rb");
    if (!f)
        __builtin_trap();
    fseek(f, 0, SEEK_END);
    nvalid = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    valid = malloc(nvalid);
    if (!valid || fread(valid, 1, nvalid, f) != nvalid)
        __builtin_trap();
    fclose(f);
}

/* n >= 8: the last 8 bytes become the FNV-1a of the others, as hnsw_save writes it. */
static void fix_checksum(uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n - 8; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    for (int i = 0; i < 8; i++)
        p[n - 8 + i] = (uint8_t)(h >> (8 * i));
}

static bool accept_odd(void *arg, int64_t id)
{
    (void)arg;
    return id & 1;
}

static void check_search(hnsw_t *h, const float *q, bool filtered)
{
    int64_t ids[5];
    float sims[5];
    int n = hnsw_search(h, q, 5, 8, filtered ? accept_odd : NULL, NULL, ids, sims);
    if (n < 0 || n > 5 || (size_t)n > hnsw_count(h))
        __builtin_trap();
    for (int i = 0; i < n; i++) {
        if (sims[i] != sims[i] || sims[i] < -1.01f || sims[i] > 1.01f || (i && sims[i] > sims[i - 1]))
            __builtin_trap();
        if (filtered && !(ids[i] & 1))
            __builtin_trap();
        for (int j = 0; j < i; j++)
            if (ids[j] == ids[i])
                __builtin_trap();
    }
}

/* Loads p[0..n) and checks whatever comes back. */
static void try_load(const uint8_t *p, size_t n)
{
    if (ftruncate(mem_fd, 0) != 0 || (n && pwrite(mem_fd, p, n, 0) != (ssize_t)n))
        __builtin_trap();
    err_t e;
    err_clear(&e);
    hnsw_t *h = hnsw_load(mem_path, &e);
    if (!h) {
        if (e.code != ERR_INTERNAL || !e.message[0])
            __builtin_trap();
        return;
    }
    int dim = hnsw_dim(h);
    if (dim < 1 || dim > 65536)
        __builtin_trap();
    float *q = calloc((size_t)dim, sizeof *q);
    if (!q)
        __builtin_trap();
    for (int i = 0; i < dim; i++)
        q[i] = (float)((i * 7 + (int)n) % 5) - 2.0f;
    q[0] = 1; /* never the zero vector */
    check_search(h, q, false);
    check_search(h, q, true);
    size_t before = hnsw_count(h);
    if (hnsw_remove(h, 0) && hnsw_count(h) != before - 1)
        __builtin_trap();
    if (!hnsw_add(h, -1, q))
        __builtin_trap();
    check_search(h, q, false);
    size_t count = hnsw_count(h);
    if (!hnsw_save(h, save_path, &e))
        __builtin_trap();
    hnsw_free(h);
    h = hnsw_load(save_path, &e);
    if (!h || hnsw_count(h) != count)
        __builtin_trap();
    check_search(h, q, true);
    hnsw_free(h);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mem_fd < 0)
        init();
    if (size > (1u << 20))
        return 0;
    try_load(data, size);

    uint8_t *p = malloc(size > nvalid ? size : nvalid);
    if (!p)
        __builtin_trap();
    if (size >= 8) {
        memcpy(p, data, size);
        fix_checksum(p, size);
        try_load(p, size);
    }
    memcpy(p, valid, nvalid);
    for (size_t i = 0; i + 3 <= size; i += 3) {
        size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8) % (nvalid - 8);
        p[off] = data[i + 2];
    }
    fix_checksum(p, nvalid);
    try_load(p, nvalid);
    free(p);
    return 0;
}
