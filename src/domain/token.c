/* token: see token.h. The secret is process-wide, set once at start-up and read-only afterwards. */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/util.h"

#define NBF_LEEWAY_S 30 /* clocks of several instances may differ by a little */

static unsigned char secret[256];
static size_t secret_len;

void token_set_secret(const char *s, size_t len)
{
    secret_len = len < sizeof secret ? len : sizeof secret;
    memcpy(secret, s, secret_len);
}

/* Reads DATA_DIR/jwt-secret, or makes it: 32 random bytes as 64 hex digits, mode 0600, created
 * exclusively so that two processes starting together end up with the same one. */
bool token_setup(const char *configured, const char *data_dir, err_t *e)
{
    if (sodium_init() < 0)
        return err_set(e, ERR_INTERNAL, "libsodium could not start");
    if (configured) {
        token_set_secret(configured, strlen(configured));
        return true;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/jwt-secret", data_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && (st.st_mode & 077))
            log_warn("%s is readable by other users (mode %03o): anyone who reads it can sign tokens; chmod 600 it",
                     path, (unsigned)(st.st_mode & 0777));
        if (fd >= 0) {
            char buf[sizeof secret];
            ssize_t n = read(fd, buf, sizeof buf);
            close(fd);
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
            if (n < 32)
                return err_set(e, ERR_INTERNAL, "%s: expected at least 32 characters (delete it to make a new one)", path);
            token_set_secret(buf, (size_t)n);
            sodium_memzero(buf, sizeof buf);
            return true;
        }
        if (errno != ENOENT)
            return err_set(e, ERR_INTERNAL, "%s: %s", path, strerror(errno));
        /* written whole under a temporary name, then linked into place: a process starting at the
         * same moment sees either no file or the whole secret, never a part of it */
        char tmp[1200];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return err_set(e, ERR_INTERNAL, "%s: %s", tmp, strerror(errno));
        unsigned char raw[32]; /* from the kernel's CSPRNG: rand_hex_id is for ids, not secrets */
        randombytes_buf(raw, sizeof raw);
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        sodium_memzero(raw, sizeof raw);
        hex[64] = '\n';
        bool ok = write(fd, hex, 65) == 65 && fsync(fd) == 0;
        close(fd);
        int linked = ok ? link(tmp, path) : -1;
        int link_errno = errno;
        unlink(tmp);
        if (!ok || (linked != 0 && link_errno != EEXIST)) {
            sodium_memzero(hex, sizeof hex);
            return err_set(e, ERR_INTERNAL, "%s: could not be written", path);
        }
        if (linked != 0) { /* another process made it first: read theirs */
            sodium_memzero(hex, sizeof hex);
            continue;
        }
        token_set_secret(hex, 64);
        sodium_memzero(hex, sizeof hex);
        return true;
    }
    return err_set(e, ERR_INTERNAL, "%s: could not be read", path);
}

char *token_issue(const token_claims_t *c, arena_t *a, err_t *e)
{
    jwt_t *jwt = NULL;
    char sub[24], jti[33];
    snprintf(sub, sizeof sub, "%lld", (long long)c->user_id);
    unsigned char raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(jti, sizeof jti, raw, sizeof raw);
    char *out = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grant(jwt, "sub", sub) == 0 && jwt_add_grant_int(jwt, "sid", (long)c->session_id) == 0 &&
        jwt_add_grant(jwt, "role", c->role) == 0 && jwt_add_grant_int(jwt, "iat", (long)c->issued_at) == 0 &&
        jwt_add_grant_int(jwt, "nbf", (long)c->issued_at) == 0 && jwt_add_grant_int(jwt, "exp", (long)c->expires_at) == 0 &&
        jwt_add_grant(jwt, "jti", jti) == 0 && jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)secret_len) == 0) {
        char *s = jwt_encode_str(jwt);
        if (s) {
            out = arena_strdup(a, s);
            free(s);
        }
    }
    jwt_free(jwt);
    if (!out)
        err_set(e, ERR_INTERNAL, "could not sign the access token");
    return out;
}

static bool invalid(err_t *e, const char *why) { return err_set(e, ERR_UNAUTHORIZED, "the access token is not valid: %s", why); }

/* The header must be a JSON object whose alg is exactly "HS256" (typ, when present, "JWT"). */
static bool header_ok(const char *h, size_t n)
{
    char buf[512];
    if (n == 0 || n > 600)
        return false;
    long len = b64url_decode(h, n, buf);
    if (len <= 0 || (size_t)len >= sizeof buf)
        return false;
    json_t *j = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    const char *alg = j ? json_string_value(json_object_get(j, "alg")) : NULL;
    json_t *typ = j ? json_object_get(j, "typ") : NULL;
    bool ok = json_is_object(j) && alg && strcmp(alg, "HS256") == 0 &&
              (!typ || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0));
    json_decref(j);
    return ok;
}

static bool signature_ok(const char *token, size_t signed_len, const char *sig, size_t sig_len)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, secret, secret_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, signed_len);
    crypto_auth_hmacsha256_final(&st, mac);
    char want[48];
    size_t want_len = b64url_encode(mac, sizeof mac, want); /* 43 characters, no padding */
    return sig_len == want_len && sodium_memcmp(want, sig, want_len) == 0;
}

bool token_verify(const char *token, size_t len, int64_t now, arena_t *a, token_claims_t *out, err_t *e)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || len > TOKEN_MAX_LEN || memchr(token, '\0', len))
        return invalid(e, "malformed");
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return invalid(e, "malformed");
    if (!header_ok(token, (size_t)(dot1 - token)))
        return invalid(e, "the algorithm must be HS256");
    if (!signature_ok(token, (size_t)(dot2 - token), dot2 + 1, len - (size_t)(dot2 + 1 - token)))
        return invalid(e, "bad signature");
    char *copy = arena_strndup(a, token, len);
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, copy, secret, (int)secret_len) != 0 || jwt_get_alg(jwt) != JWT_ALG_HS256) {
        jwt_free(jwt);
        return invalid(e, "malformed");
    }
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    bool has_exp = errno == 0;
    errno = 0;
    long nbf = jwt_get_grant_int(jwt, "nbf");
    bool has_nbf = errno == 0;
    errno = 0;
    long sid = jwt_get_grant_int(jwt, "sid");
    bool has_sid = errno == 0;
    errno = 0;
    long iat = jwt_get_grant_int(jwt, "iat");
    const char *sub = jwt_get_grant(jwt, "sub"), *role = jwt_get_grant(jwt, "role");
    int64_t uid = 0;
    bool ok = false;
    if (!has_exp || !has_nbf || !has_sid || !sub || !parse_i64(sub, &uid) || uid <= 0 || sid <= 0)
        invalid(e, "claims missing");
    else if (exp <= now)
        invalid(e, "expired");
    else if (nbf > now + NBF_LEEWAY_S)
        invalid(e, "not valid yet");
    else
        ok = true;
    if (ok) {
        out->user_id = uid;
        out->session_id = sid;
        out->role = role ? arena_strdup(a, role) : NULL;
        out->issued_at = iat;
        out->expires_at = exp;
    }
    jwt_free(jwt);
    return ok;
}

static void sha256_hex(const void *p, size_t n, char hex[REFRESH_HASH_LEN + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, p, n);
    sodium_bin2hex(hex, REFRESH_HASH_LEN + 1, h, sizeof h);
}

void token_refresh_new(char token[REFRESH_TOKEN_LEN + 1], char hash[REFRESH_HASH_LEN + 1])
{
    unsigned char raw[32];
    rand_bytes(raw, sizeof raw);
    b64url_encode(raw, sizeof raw, token);
    token[REFRESH_TOKEN_LEN] = '\0';
    sha256_hex(token, REFRESH_TOKEN_LEN, hash);
}

void token_refresh_hash(const char *token, char hash[REFRESH_HASH_LEN + 1]) { sha256_hex(token, strlen(token), hash); }
