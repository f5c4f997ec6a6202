/* router: linear match over the route table. The table is small (tens of routes) and a segment
 * compare is a few nanoseconds, so a trie would buy nothing measurable. */
#include "router.h"

#include <stdio.h>
#include <string.h>

static route_t *table = app_routes;

void router_use(route_t *routes) { table = routes; }

const route_t *router_table(void) { return table; }

int router_count(void)
{
    int n = 0;
    while (table[n].pattern)
        n++;
    return n;
}

/* Match `path` against `pattern`; fills params into req when `req` is not NULL. */
static bool match(const char *pattern, const char *path, http_request_t *req)
{
    const char *p = pattern, *s = path;
    int np = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t seglen = strcspn(s, "/");
            if (seglen == 0 || !close)
                return false;
            if (req) {
                if (np == HTTP_MAX_PARAMS)
                    return false;
                req->param_names[np] = arena_strndup(req->arena, p + 1, (size_t)(close - p - 1));
                req->param_values[np] = arena_strndup(req->arena, s, seglen);
            }
            np++;
            p = close + 1;
            s += seglen;
            continue;
        }
        if (*p != *s)
            return false;
        p++, s++;
    }
    if (*p || *s)
        return false;
    if (req)
        req->nparams = np;
    return true;
}

route_match_t router_match(http_request_t *req, char *allow, size_t allowlen)
{
    http_method_t m = req->method == METHOD_HEAD ? METHOD_GET : req->method;
    bool any = false;
    bool methods[METHOD__COUNT] = {0};
    for (route_t *r = table; r->pattern; r++) {
        if (!match(r->pattern, req->path, NULL))
            continue;
        any = true;
        methods[r->method] = true;
        if (r->method == m && req->method != METHOD_OPTIONS) {
            match(r->pattern, req->path, req);
            req->route = r;
            return ROUTE_FOUND;
        }
    }
    if (!any)
        return ROUTE_NO_PATH;
    if (methods[METHOD_GET])
        methods[METHOD_HEAD] = true;
    methods[METHOD_OPTIONS] = true;
    size_t n = 0;
    allow[0] = '\0';
    for (int i = 0; i < METHOD_OTHER; i++)
        if (methods[i])
            n += (size_t)snprintf(allow + n, n < allowlen ? allowlen - n : 0, "%s%s", n ? ", " : "", http_method_names[i]);
    return ROUTE_NO_METHOD;
}
