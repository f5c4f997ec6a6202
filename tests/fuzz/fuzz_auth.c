/* fuzz_auth: the Authorization header path: auth_precheck (the "Bearer" scheme, the token's size)
 * and token_verify (the header's algorithm, the constant-time signature check, libjwt's decoding,
 * the claims and their times), on arbitrary header values.
 *
 * The one idea: beyond "no crash", check what the check promises. The first input byte picks a
 * mode: 0 feeds the rest as the header value: it is refused with a 401 written, or accepted with a
 * user and a session noted (the seeds hold one token signed with the fuzzing secret, so mutations of
 * it probe the checks after the signature); 1 issues a real token from claims drawn from the input,
 * checks it verifies to exactly those claims and not at its expiry, then changes one character
 * (position and replacement from the input) and checks the result is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "base/arena.h"
#include "base/util.h"
#include "domain/token.h"
#include "net/http.h"

static const char SECRET[] = "fuzz-secret-fuzz-secret-fuzz-secret-0123";

static uint64_t take(const uint8_t **p, size_t *n)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *n; i++, (*p)++, (*n)--)
        v = (v << 8) | **p;
    return v;
}

static void precheck(const char *value, arena_t *arena)
{
    http_request_t req;
    memset(&req, 0, sizeof req);
    req.arena = arena;
    req.headers[0] = (http_header_t){"Authorization", value};
    req.nheaders = 1;
    http_response_t res;
    memset(&res, 0, sizeof res);
    buf_init(&res.body);
    buf_init(&res.headers);
    bool ok = auth_precheck(&req, &res);
    if (ok != (res.status == 0)) /* refused exactly when an answer was written */
        __builtin_trap();
    if (!ok && res.status != 401)
        __builtin_trap();
    if (ok && (req.auth_user_id <= 0 || req.auth_session_id <= 0))
        __builtin_trap();
    buf_free(&res.body);
    buf_free(&res.headers);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        token_set_secret(SECRET, strlen(SECRET));
        ready = true;
    }
    if (size < 1)
        return 0;
    arena_t arena;
    arena_init(&arena);
    uint8_t mode = data[0] % 2;
    data++, size--;
    if (mode == 0) {
        char *value = arena_strndup(&arena, (const char *)data, size); /* stops at a NUL, as a header would */
        precheck(value, &arena);
        token_claims_t c;
        err_t e;
        err_clear(&e);
        if (token_verify(value, strlen(value), time_now_us() / 1000000, &arena, &c, &e) && c.user_id <= 0)
            __builtin_trap();
    } else {
        token_claims_t c = {0};
        c.user_id = (int64_t)(take(&data, &size) >> 2) + 1;
        c.session_id = (int64_t)(take(&data, &size) % 2000000000) + 1;
        c.role = "agent";
        c.issued_at = 1700000000 + (int64_t)(take(&data, &size) % 100000000);
        c.expires_at = c.issued_at + 1 + (int64_t)(take(&data, &size) % 100000);
        err_t e;
        err_clear(&e);
        char *tok = token_issue(&c, &arena, &e);
        if (!tok)
            __builtin_trap();
        token_claims_t got;
        if (!token_verify(tok, strlen(tok), c.issued_at, &arena, &got, &e) || got.user_id != c.user_id ||
            got.session_id != c.session_id || got.expires_at != c.expires_at || strcmp(got.role, "agent") != 0)
            __builtin_trap();
        if (token_verify(tok, strlen(tok), c.expires_at, &arena, &got, &e)) /* expired at exp */
            __builtin_trap();
        size_t len = strlen(tok);
        size_t pos = (size_t)(take(&data, &size) % len);
        char repl = size ? (char)data[0] : 'A';
        if (repl != tok[pos] && repl != '\0') {
            tok[pos] = repl;
            if (token_verify(tok, len, c.issued_at, &arena, &got, &e))
                __builtin_trap();
        }
    }
    arena_free(&arena);
    return 0;
}
