/* fuzz_json_property: a property body as POST and PATCH /api/properties read it: jansson, then
 * property_from_json, property_check (create, and update after property_merge into a valid
 * listing), then property_write_json; plus money_parse and utf8_valid on the raw bytes.
 *
 * The one idea: whatever the validator accepts or rejects, what property_write_json writes must be
 * JSON that jansson reads back, and an accepted price must come back as exactly the cents it was
 * read as; money_parse and jw_money must round-trip, and utf8_valid must agree with an independent
 * table-driven validator (Unicode 15, table 3-7). Any disagreement traps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/jw.h"
#include "base/util.h"
#include "domain/property.h"

/* Reference UTF-8 validator: the well-formed byte sequences of Unicode table 3-7. */
static bool ref_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c <= 0x7F) {
            i++;
            continue;
        }
        uint8_t lo = 0x80, hi = 0xBF;
        size_t len;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c == 0xE0)
            len = 3, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
            len = 3;
        else if (c == 0xED)
            len = 3, hi = 0x9F;
        else if (c == 0xF0)
            len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3)
            len = 4;
        else if (c == 0xF4)
            len = 4, hi = 0x8F;
        else
            return false;
        if (n - i < len)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        i += len;
    }
    return true;
}

/* jw_money's text read back by money_parse gives the same cents. */
static void money_round_trip(int64_t cents)
{
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    jw_money(&w, cents);
    int64_t back = 0;
    if (money_parse(buf_cstr(&b), &back) != 0 || back != cents)
        __builtin_trap();
    buf_free(&b);
}

/* property_write_json output is JSON; when `accepted`, its price is exactly p->price_cents. */
static void write_and_reread(const property_t *p, bool accepted)
{
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    property_write_json(&w, p, true);
    if (w.depth != 0)
        __builtin_trap();
    json_error_t je;
    json_t *v = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(v))
        __builtin_trap(); /* the writer produced something that is not a JSON object */
    if (accepted) {
        json_t *price = json_object_get(v, "price");
        if (!json_is_number(price) || llround(json_number_value(price) * 100) != p->price_cents)
            __builtin_trap();
        if (!json_is_string(json_object_get(v, "title")) || !json_is_string(json_object_get(v, "property_type")))
            __builtin_trap();
    }
    json_decref(v);
    buf_free(&b);
}

/* A listing as the store would hand it to PATCH: every required field set and valid. */
static void valid_base(property_t *p)
{
    static const char *amen[] = {"pool", "garage"};
    property_init(p);
    p->id = 7;
    p->title = "Base listing";
    p->location = "North Ames, Ames, IA";
    p->city = "Ames";
    p->price_cents = 21500000;
    p->bedrooms = 3;
    p->bathrooms = 2.5;
    p->size_sqft = 1600;
    p->year_built = 1972;
    p->amenities = amen;
    p->namenities = 2;
    p->property_type = "single_family";
    p->status = "active";
    p->version = 3;
    p->created_at = 1700000000000000;
    p->updated_at = 1700000000000001;
    p->set = PF_REQUIRED | PF_BIT(PF_CITY) | PF_BIT(PF_YEAR_BUILT) | PF_BIT(PF_AMENITIES) | PF_BIT(PF_IMAGE_URLS) |
             PF_BIT(PF_PROPERTY_TYPE) | PF_BIT(PF_STATUS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;

    /* the raw bytes as a money string and as UTF-8 */
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t cents = 0;
    int r = money_parse(s, &cents);
    if (r != 0 && r != -1 && r != -2)
        __builtin_trap();
    if (r == 0) {
        if (cents > MONEY_MAX_CENTS || cents < -MONEY_MAX_CENTS)
            __builtin_trap();
        money_round_trip(cents);
    }
    free(s);
    if (utf8_valid((const char *)data, size) != ref_utf8_valid(data, size))
        __builtin_trap();

    json_error_t je;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return 0;
    if (json_is_number(root)) {
        int64_t c = 0;
        int mr = money_from_double(json_number_value(root), &c);
        if (mr == 0)
            money_round_trip(c);
    }

    arena_t arena;
    arena_init(&arena);

    /* POST: read, check with creating=true, write */
    {
        err_t e;
        err_clear(&e);
        property_t p;
        property_init(&p);
        uint64_t present = 0;
        bool typed = property_from_json(root, &p, &present, &arena, &e);
        bool accepted = false;
        if (typed || e.ndetails > 0)
            accepted = property_check(&p, present, true, &e);
        if (accepted && (e.code != ERR_NONE || (p.set & PF_REQUIRED) != PF_REQUIRED))
            __builtin_trap();
        if (!accepted && e.code == ERR_NONE)
            __builtin_trap(); /* rejected without saying why */
        if (e.ndetails > ERR_MAX_DETAILS)
            __builtin_trap();
        write_and_reread(&p, accepted);
    }

    /* PATCH: read the changes, merge them into a valid listing, check with creating=false, write */
    {
        err_t e;
        err_clear(&e);
        property_t changes;
        property_init(&changes);
        uint64_t present = 0;
        property_from_json(root, &changes, &present, &arena, &e);
        if (e.code == ERR_NONE) {
            property_t p;
            valid_base(&p);
            property_merge(&p, &changes, present);
            bool accepted = property_check(&p, present, false, &e);
            if (accepted && (p.set & PF_REQUIRED) != PF_REQUIRED)
                __builtin_trap(); /* a PATCH nulled a required field and was let through */
            write_and_reread(&p, accepted);
        }
    }

    json_decref(root);
    arena_free(&arena);
    return 0;
}
