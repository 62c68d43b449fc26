// Package auth says who is calling warren's API and what they may do.
//
// Two kinds of credentials are understood, both sent as "Authorization: Bearer …"
// (or "X-API-Key: …" for a key):
//
//   - API keys: "wrn_" and 43 characters of base64url (256 random bits). The keys
//     file (API_KEYS_FILE) holds, per key, a name, the SHA-256 of the secret (never
//     the secret), the models it may call (path.Match globs), whether it may use the
//     admin endpoints and its limits. The file is re-read when it changes and on
//     SIGHUP; a bad file keeps the keys already loaded.
//   - JWTs from an identity provider (OIDC_ISSUER, OIDC_AUDIENCE): the signature is
//     checked against the provider's JWKS (fetched, cached, re-fetched for an
//     unknown key id), as are the issuer, audience and expiry. A claim
//     (OIDC_ROLES_CLAIM) names roles of the keys file's "roles" section, which
//     carry the same permissions as a key.
//
// Whoever authenticated is a [Principal] on the request's context ([FromContext]).
// Failed attempts are limited per client address ([FailureLimiter]).
//
// Why a plain SHA-256 and not a slow KDF: a slow hash protects low-entropy secrets
// (passwords) from guessing once the hashes leak. A key is 256 random bits; nobody
// can enumerate that space, however fast the hash, so a slow KDF would only make
// every request slower.
package auth
