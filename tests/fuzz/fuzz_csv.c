/* fuzz_csv: the importer's RFC 4180 reader (domain/csv.c) over arbitrary bytes, every record to
 * the end of the input.
 *
 * The one idea: the reader must always make progress and stay inside its bounds, so besides what
 * ASan sees, each call is checked: a record or a skipped bad record consumes input, line numbers
 * never go backwards, every field is NUL-terminated at its reported length within
 * CSV_MAX_FIELD_LEN, and the loop ends within one call per input byte (plus the final CSV_END). */
#include <stdint.h>
#include <string.h>

#include "domain/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csv_t c;
    csv_init(&c, (const char *)data, size);
    err_t e;
    int last_line = 0;
    size_t calls = 0;
    for (;;) {
        if (++calls > size + 2)
            __builtin_trap(); /* more calls than bytes: the reader is not advancing */
        size_t before = c.pos;
        err_clear(&e);
        csv_status_t st = csv_next(&c, &e);
        if (st == CSV_END) {
            if (c.pos < c.len)
                __builtin_trap();
            break;
        }
        if (st == CSV_FATAL) {
            if (e.code == ERR_NONE)
                __builtin_trap();
            break;
        }
        if (c.pos <= before || c.pos > c.len)
            __builtin_trap();
        if (c.line < last_line || c.line < 1 || c.cur_line < c.line)
            __builtin_trap();
        last_line = c.line;
        if (st == CSV_BAD) {
            if (e.code == ERR_NONE)
                __builtin_trap();
            continue;
        }
        if (st != CSV_RECORD || e.code != ERR_NONE)
            __builtin_trap();
        if (c.nfields < 1 || c.nfields > CSV_MAX_FIELDS)
            __builtin_trap();
        for (int i = 0; i < c.nfields; i++) {
            if (c.lens[i] > CSV_MAX_FIELD_LEN || c.fields[i][c.lens[i]] != '\0')
                __builtin_trap();
            if (!c.quoted[i] && memchr(c.fields[i], '\n', c.lens[i]))
                __builtin_trap(); /* only a quoted field may hold a line break */
        }
        /* what the importer does with the header row */
        (void)csv_find(&c, "price");
        (void)csv_find(&c, c.fields[c.nfields - 1]);
    }
    csv_free(&c);
    return 0;
}
