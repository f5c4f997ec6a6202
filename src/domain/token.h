/* token: access tokens (JWT, HS256) and refresh tokens (opaque random strings).
 *
 * libjwt encodes and decodes the JWTs. Before a token reaches it, hearth checks what libjwt 1.10
 * leaves to the caller: the header names exactly HS256 (so `none` and every other algorithm are
 * refused), the signature matches in constant time (libsodium's HMAC-SHA-256 and sodium_memcmp;
 * libjwt compares with strcmp), and afterwards that `exp` and `nbf` are present and hold. */
#ifndef HEARTH_TOKEN_H
#define HEARTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"

#define TOKEN_MAX_LEN 4096  /* a longer Authorization value is refused unread */
#define REFRESH_TOKEN_LEN 43 /* 32 random bytes in base64url */
#define REFRESH_HASH_LEN 64  /* SHA-256 in hex */

/* The signing secret: `configured` (HEARTH_JWT_SECRET, already checked to be >= 32 bytes) or the
 * one kept in DATA_DIR/jwt-secret, made (mode 0600) on first use. */
bool token_setup(const char *configured, const char *data_dir, err_t *e);
/* Installs a secret directly (tests, fuzzing). */
void token_set_secret(const char *secret, size_t len);

typedef struct token_claims {
    int64_t user_id, session_id;
    const char *role;
    int64_t issued_at, expires_at; /* unix seconds */
} token_claims_t;

/* A signed access token for `c` (issued_at and expires_at filled by the caller), in `a`. */
char *token_issue(const token_claims_t *c, arena_t *a, err_t *e);
/* Verifies `token` at `now` (unix seconds): ERR_UNAUTHORIZED with a reason when it is not valid. */
bool token_verify(const char *token, size_t len, int64_t now, arena_t *a, token_claims_t *out, err_t *e);

/* A new refresh token (REFRESH_TOKEN_LEN chars + NUL) and the hash stored for it. */
void token_refresh_new(char token[REFRESH_TOKEN_LEN + 1], char hash[REFRESH_HASH_LEN + 1]);
/* The stored hash of a presented refresh token (any length; a wrong one simply matches nothing). */
void token_refresh_hash(const char *token, char hash[REFRESH_HASH_LEN + 1]);

#endif
