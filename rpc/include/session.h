/*
 * session: the keys and frame protection of one rpc connection, inside rpc/.
 *
 * munge authenticates each side once, when the connection opens: the client
 * sends its ephemeral X25519 public key in a munge credential (HELLO), the
 * server answers with its own and a hash of the client's (WELCOME).  Both
 * then derive one AES-256-GCM key and protect every later frame with it, so
 * that a message costs no round trip to munged.  A credential can be read by
 * anyone who can reach a munged with the same key, but a public key is no
 * secret: the shared key needs one side's private key, which never leaves
 * its process.
 */
#ifndef CRJOB_RPC_SESSION_H
#define CRJOB_RPC_SESSION_H

#include <stddef.h>
#include <stdint.h>

#define SESS_PUB_LEN	32
#define SESS_HASH_LEN	32
#define SESS_TAG_LEN	16
#define SESS_MAX_PLAIN	(16u << 20)

struct sess;

/* a new ephemeral key pair, for the server side of a connection or not */
int sess_new(int server, struct sess **out);
void sess_free(struct sess *s);
const uint8_t *sess_pub(const struct sess *s);

/* derive the connection's key from the peer's public key; -EINVAL if unusable */
int sess_agree(struct sess *s, const uint8_t peer[SESS_PUB_LEN]);

/* out holds len + SESS_TAG_LEN bytes: the next frame of ours */
int sess_seal(struct sess *s, const uint8_t *in, size_t len, uint8_t *out);
/* out holds len - SESS_TAG_LEN bytes; -EBADMSG unless it is the peer's next frame */
int sess_open(struct sess *s, const uint8_t *in, size_t len, uint8_t *out);

/* SHA-256 */
int sess_hash(const uint8_t *data, size_t len, uint8_t out[SESS_HASH_LEN]);

#endif
