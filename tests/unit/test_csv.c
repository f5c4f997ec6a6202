/* test_csv: the RFC 4180 reader: quoting, "" escapes, quoted newlines and the line each record
 * starts on, CRLF, bounds, and errors that stop (unterminated quote) or skip a record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "domain/csv.h"

static csv_status_t next(csv_t *c, err_t *e)
{
    err_clear(e);
    return csv_next(c, e);
}

static void test_simple_and_quoted(void **state)
{
    (void)state;
    const char *in = "a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n,\"\",last";
    csv_t c;
    err_t e;
    csv_init(&c, in, strlen(in));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.nfields, 3);
    assert_int_equal(c.line, 1);
    assert_string_equal(c.fields[2], "c");
    assert_int_equal(csv_find(&c, "b"), 1);
    assert_int_equal(csv_find(&c, "z"), -1);
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.line, 2);
    assert_string_equal(c.fields[0], "1");
    assert_false(c.quoted[0]);
    assert_string_equal(c.fields[1], "x, y");
    assert_true(c.quoted[1]);
    assert_string_equal(c.fields[2], "say \"hi\"");
    assert_int_equal(c.lens[2], 8);
    assert_int_equal(next(&c, &e), CSV_RECORD); /* no final newline */
    assert_int_equal(c.line, 3);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(c.fields[0], "");
    assert_string_equal(c.fields[1], "");
    assert_true(c.quoted[1]);
    assert_string_equal(c.fields[2], "last");
    assert_int_equal(next(&c, &e), CSV_END);
    assert_int_equal(next(&c, &e), CSV_END);
    csv_free(&c);
}

static void test_quoted_newlines_and_lines(void **state)
{
    (void)state;
    const char *in = "h1,h2\r\n\"two\r\nlines\",x\r\n\"three\nmore\nlines\",y\r\n\r\nz,w\r\n";
    csv_t c;
    err_t e;
    csv_init(&c, in, strlen(in));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.line, 1);
    assert_string_equal(c.fields[1], "h2"); /* CR not part of the field */
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.line, 2);
    assert_string_equal(c.fields[0], "two\r\nlines");
    assert_string_equal(c.fields[1], "x");
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.line, 4);
    assert_string_equal(c.fields[0], "three\nmore\nlines");
    assert_int_equal(next(&c, &e), CSV_RECORD); /* the blank line is skipped but counted */
    assert_int_equal(c.line, 8);
    assert_string_equal(c.fields[0], "z");
    assert_string_equal(c.fields[1], "w");
    assert_int_equal(next(&c, &e), CSV_END);
    csv_free(&c);
}

static void test_bom_and_empty(void **state)
{
    (void)state;
    const char *in = "\xEF\xBB\xBF" "id\n7\n";
    csv_t c;
    err_t e;
    csv_init(&c, in, strlen(in));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_string_equal(c.fields[0], "id");
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_string_equal(c.fields[0], "7");
    assert_int_equal(next(&c, &e), CSV_END);
    csv_free(&c);

    csv_init(&c, "", 0);
    assert_int_equal(next(&c, &e), CSV_END);
    csv_free(&c);
}

static void test_unterminated_quote_is_fatal(void **state)
{
    (void)state;
    const char *in = "a,b\n1,2\n3,\"never\nclosed,4\n";
    csv_t c;
    err_t e;
    csv_init(&c, in, strlen(in));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(next(&c, &e), CSV_FATAL);
    assert_non_null(strstr(e.message, "line 3"));
    assert_non_null(strstr(e.message, "unterminated"));
    csv_free(&c);
}

static void test_bad_record_is_skipped(void **state)
{
    (void)state;
    /* text after a closing quote: that record is reported, the next one still reads */
    const char *in = "a,b\n\"x\"y,\"multi\nline\"\nok,1\n";
    csv_t c;
    err_t e;
    csv_init(&c, in, strlen(in));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(next(&c, &e), CSV_BAD);
    assert_non_null(strstr(e.message, "line 2"));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_int_equal(c.line, 4);
    assert_string_equal(c.fields[0], "ok");
    assert_int_equal(next(&c, &e), CSV_END);
    csv_free(&c);
}

static void test_bounds(void **state)
{
    (void)state;
    /* too many fields */
    size_t n = CSV_MAX_FIELDS + 10;
    char *wide = test_malloc(2 * n + 16);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        wide[k++] = 'x', wide[k++] = ',';
    wide[k - 1] = '\n';
    memcpy(wide + k, "next\n", 5);
    k += 5;
    csv_t c;
    err_t e;
    csv_init(&c, wide, k);
    assert_int_equal(next(&c, &e), CSV_BAD);
    assert_non_null(strstr(e.message, "too many fields"));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_string_equal(c.fields[0], "next");
    assert_int_equal(c.line, 2);
    csv_free(&c);
    test_free(wide);

    /* a field longer than the bound, quoted (with a newline inside) and unquoted */
    size_t big = CSV_MAX_FIELD_LEN + 100;
    char *longf = test_malloc(2 * big + 64);
    k = 0;
    longf[k++] = '"';
    memset(longf + k, 'y', big);
    k += big;
    longf[k++] = '\n';
    longf[k++] = '"';
    longf[k++] = '\n';
    memset(longf + k, 'z', big);
    k += big;
    memcpy(longf + k, "\nfine\n", 6);
    k += 6;
    csv_init(&c, longf, k);
    assert_int_equal(next(&c, &e), CSV_BAD);
    assert_non_null(strstr(e.message, "too long"));
    assert_int_equal(next(&c, &e), CSV_BAD);
    assert_non_null(strstr(e.message, "line 3"));
    assert_int_equal(next(&c, &e), CSV_RECORD);
    assert_string_equal(c.fields[0], "fine");
    assert_int_equal(c.line, 4);
    csv_free(&c);
    test_free(longf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_and_quoted),
        cmocka_unit_test(test_quoted_newlines_and_lines),
        cmocka_unit_test(test_bom_and_empty),
        cmocka_unit_test(test_unterminated_quote_is_fatal),
        cmocka_unit_test(test_bad_record_is_skipped),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
