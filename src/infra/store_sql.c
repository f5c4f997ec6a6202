/* store_sql: the search SQL for both dialects; see store_sql.h. */
#include "store_sql.h"

#include <jansson.h>
#include <string.h>

#include "../base/jw.h"

typedef struct builder {
    sql_dialect_t d;
    buf_t *sql;
    sql_binds_t *b;
} builder_t;

/* Appends a placeholder for the next binding. */
static void ph(builder_t *s)
{
    if (s->d == SQL_POSTGRES)
        buf_printf(s->sql, "$%d", s->b->n + 1);
    else
        buf_putc(s->sql, '?');
}

static void bind_i(builder_t *s, const char *before, int64_t v, const char *after)
{
    buf_puts(s->sql, before);
    ph(s);
    buf_puts(s->sql, after);
    s->b->kind[s->b->n] = BIND_INT;
    s->b->i[s->b->n++] = v;
}

static void bind_d(builder_t *s, const char *before, double v, const char *after)
{
    buf_puts(s->sql, before);
    ph(s);
    buf_puts(s->sql, after);
    s->b->kind[s->b->n] = BIND_DOUBLE;
    s->b->d[s->b->n++] = v;
}

static void bind_t(builder_t *s, const char *before, const char *v, const char *after)
{
    buf_puts(s->sql, before);
    ph(s);
    buf_puts(s->sql, after);
    s->b->kind[s->b->n] = BIND_TEXT;
    s->b->t[s->b->n++] = v;
}

static bool word_byte(unsigned char ch)
{
    return ch >= 0x80 || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
}

/* A full-text query from free text: every word required, the last one as a prefix ("victor" finds
 * "Victorian"), each quoted so that no user text is query syntax. NULL when there is no word. */
static const char *fts_query(sql_dialect_t d, const char *q, arena_t *a)
{
    buf_t b;
    buf_init(&b);
    const unsigned char *s = (const unsigned char *)q;
    while (*s) {
        while (*s && !word_byte(*s))
            s++;
        const unsigned char *start = s;
        while (*s && word_byte(*s))
            s++;
        if (s == start)
            continue;
        if (b.len)
            buf_puts(&b, d == SQL_POSTGRES ? " & " : " ");
        char quote = d == SQL_POSTGRES ? '\'' : '"';
        buf_putc(&b, quote);
        buf_append(&b, start, (size_t)(s - start));
        buf_putc(&b, quote);
    }
    const char *out = NULL;
    if (b.len) {
        buf_puts(&b, d == SQL_POSTGRES ? ":*" : "*");
        out = arena_strdup(a, buf_cstr(&b));
    }
    buf_free(&b);
    return out;
}

/* "%needle%" for LIKE, with the wildcards of the needle escaped by backslash. */
static const char *like_pattern(const char *s, arena_t *a)
{
    char *out = arena_alloc(a, strlen(s) * 2 + 3), *p = out;
    *p++ = '%';
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\')
            *p++ = '\\';
        *p++ = *s;
    }
    *p++ = '%';
    *p = '\0';
    return out;
}

static size_t code_points(const char *s)
{
    size_t n = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        n += (*u & 0xC0) != 0x80;
    return n;
}

static const char *sort_expr(property_sort_t s, bool desc)
{
    switch (s) {
    case SORT_PRICE: return "p.price_cents";
    case SORT_SIZE_SQFT: return "p.size_sqft";
    case SORT_BEDROOMS: return "p.bedrooms";
    case SORT_YEAR_BUILT: return desc ? "coalesce(p.year_built, -1)" : "coalesce(p.year_built, 99999)";
    case SORT_CREATED_AT:
    default: return "p.created_at";
    }
}

void store_sql_search(sql_dialect_t d, const property_query_t *q, arena_t *a, buf_t *sql, sql_binds_t *b)
{
    builder_t s = {d, sql, b};
    b->n = 0;
    buf_puts(sql, "SELECT " STORE_LIST_COLUMNS " FROM properties p WHERE true");
#define HAS(f) (q->set & QF_BIT(f))
    if (HAS(QF_MIN_PRICE))
        bind_i(&s, " AND p.price_cents >= ", q->min_price, "");
    if (HAS(QF_MAX_PRICE))
        bind_i(&s, " AND p.price_cents <= ", q->max_price, "");
    if (HAS(QF_MIN_BEDROOMS))
        bind_i(&s, " AND p.bedrooms >= ", q->min_bedrooms, "");
    if (HAS(QF_MIN_BATHROOMS))
        bind_d(&s, " AND p.bathrooms >= ", q->min_bathrooms, "");
    if (HAS(QF_MIN_SIZE))
        bind_i(&s, " AND p.size_sqft >= ", q->min_size_sqft, "");
    if (HAS(QF_MAX_SIZE))
        bind_i(&s, " AND p.size_sqft <= ", q->max_size_sqft, "");
    if (HAS(QF_CITY)) {
        if (d == SQL_POSTGRES)
            bind_t(&s, " AND lower(p.city) = lower(", q->city, ")");
        else
            bind_t(&s, " AND p.city = ", q->city, " COLLATE NOCASE");
    }
    if (HAS(QF_LOCATION)) {
        if (d == SQL_POSTGRES) /* pg_trgm's GIN index serves ILIKE */
            bind_t(&s, " AND p.location ILIKE ", like_pattern(q->location, a), " ESCAPE '\\'");
        else if (code_points(q->location) >= 3 && !strpbrk(q->location, "%_"))
            /* the trigram index needs three characters; shorter needles scan */
            bind_t(&s, " AND p.id IN (SELECT rowid FROM properties_location_trgm WHERE location LIKE ",
                   arena_printf(a, "%%%s%%", q->location), ")");
        else
            bind_t(&s, " AND instr(lower(p.location), lower(", q->location, ")) > 0");
    }
    if (HAS(QF_TYPE)) {
        buf_puts(sql, " AND p.property_type IN (");
        for (int i = 0; i < q->ntypes; i++)
            bind_t(&s, i ? ", " : "", q->types[i], "");
        buf_putc(sql, ')');
    }
    if (HAS(QF_AMENITIES))
        for (int i = 0; i < q->namenities; i++)
            bind_t(&s, " AND EXISTS (SELECT 1 FROM property_amenities am WHERE am.amenity = ", q->amenities[i],
                   " AND am.property_id = p.id)");
    if (HAS(QF_MAX_COMMUTE))
        bind_i(&s, " AND p.commute_time <= ", q->max_commute_time, "");
    if (HAS(QF_MIN_SCHOOL))
        bind_d(&s, " AND p.school_rating >= ", q->min_school_rating, "");
    if (HAS(QF_STATUS))
        bind_t(&s, " AND p.status = ", q->status, "");
    if (HAS(QF_Q)) {
        const char *m = fts_query(d, q->q, a);
        if (m && d == SQL_POSTGRES)
            bind_t(&s, " AND p.search @@ to_tsquery('simple', ", m, ")");
        else if (m)
            bind_t(&s, " AND p.id IN (SELECT rowid FROM properties_fts WHERE properties_fts MATCH ", m, ")");
    }
#undef HAS
    const char *key = sort_expr(q->sort, q->desc);
    if (q->has_cursor) {
        buf_printf(sql, " AND (%s, p.id) %s (", key, q->desc ? "<" : ">");
        bind_i(&s, "", q->cursor_value, ", ");
        bind_i(&s, "", q->cursor_id, ")");
    }
    const char *dir = q->desc ? "DESC" : "ASC";
    buf_printf(sql, " ORDER BY %s %s, p.id %s", key, dir, dir);
    bind_i(&s, " LIMIT ", q->limit + 1, "");
}

const char **store_json_list(const char *text, int *n, arena_t *a)
{
    *n = 0;
    if (!text || strcmp(text, "[]") == 0)
        return NULL;
    json_t *arr = json_loads(text, 0, NULL);
    size_t len = json_array_size(arr);
    const char **out = arena_alloc(a, (len ? len : 1) * sizeof *out);
    for (size_t i = 0; i < len; i++) {
        json_t *it = json_array_get(arr, i);
        if (json_is_string(it))
            out[(*n)++] = arena_strndup(a, json_string_value(it), json_string_length(it));
    }
    json_decref(arr);
    return out;
}

char *store_list_json(const char **items, int n)
{
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    jw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        jw_str(&w, items[i]);
    jw_arr_end(&w);
    return buf_cstr(&b); /* caller frees */
}

/* The content of a row as JSON without identity, version and times: equal strings mean an
 * import row changes nothing. */
void store_content_key(const property_t *p, buf_t *out)
{
    property_t q = *p;
    q.id = 0, q.version = 0, q.created_at = 0, q.updated_at = 0, q.owner_id = 0;
    jw_t w;
    jw_init(&w, out);
    property_write_json(&w, &q, true);
}


bool store_upsert_rows(store_conn_t *c, const upsert_steps_t *steps, property_t *rows, int n,
                       upsert_result_t *results, err_t *e)
{
    arena_t a;
    arena_init(&a);
    buf_t k1, k2;
    buf_init(&k1);
    buf_init(&k2);
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        property_t *p = &rows[i], old;
        int found = steps->find(c, p, &a, &old, e);
        if (found < 0) {
            ok = false;
        } else if (!found) {
            ok = steps->insert(c, p, &a, e);
            results[i] = UPSERT_INSERTED;
        } else if (old.owner_id != p->owner_id) {
            results[i] = UPSERT_FOREIGN; /* an import never takes over another owner's listing */
        } else {
            buf_reset(&k1), buf_reset(&k2);
            store_content_key(&old, &k1);
            store_content_key(p, &k2);
            p->id = old.id;
            p->created_at = old.created_at;
            p->updated_at = old.updated_at;
            if (k1.len == k2.len && memcmp(k1.data, k2.data, k1.len) == 0) {
                p->version = old.version;
                results[i] = UPSERT_UNCHANGED;
            } else {
                int rc = steps->update(c, p, old.version, &a, e);
                if (rc == 0) /* changed by someone else since the read above */
                    err_set(e, ERR_CONFLICT, "the row for %s/%s changed during the import; run it again", p->source,
                            p->external_id);
                ok = rc == 1;
                results[i] = UPSERT_UPDATED;
            }
        }
        arena_reset(&a);
    }
    buf_free(&k1);
    buf_free(&k2);
    arena_free(&a);
    return ok;
}
