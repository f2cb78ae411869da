/*
 * The cryptography of an rpc session (see rpc/include/session.h).
 *
 * Key agreement is X25519 between two ephemeral keys; the key is SHA-256 of
 * a label, the shared secret and both public keys (client's first), so that
 * it is bound to this exchange.  Frames are AES-256-GCM with a 96-bit nonce
 * made of the direction and a 64-bit counter: each side counts the frames it
 * seals and those it opens, so a replayed, dropped, reordered or reflected
 * frame fails authentication like a forged one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "session.h"

struct sess {
	EVP_PKEY *key;			/* our ephemeral X25519 key */
	EVP_CIPHER_CTX *enc;		/* our frames */
	EVP_CIPHER_CTX *dec;		/* the peer's frames */
	uint8_t pub[SESS_PUB_LEN];
	uint64_t sent;
	uint64_t received;
	int server;
	int ready;
};

static const char kdf_label[] = "crjob-rpc-v2 aes-256-gcm";

int sess_new(int server, struct sess **out)
{
	struct sess *s = calloc(1, sizeof(*s));
	EVP_PKEY_CTX *kctx;
	size_t len = SESS_PUB_LEN;
	int ok;

	if (!s)
		return -ENOMEM;
	s->server = server;
	kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	ok = kctx && EVP_PKEY_keygen_init(kctx) > 0 && EVP_PKEY_keygen(kctx, &s->key) > 0 &&
	     EVP_PKEY_get_raw_public_key(s->key, s->pub, &len) > 0 && len == SESS_PUB_LEN;
	EVP_PKEY_CTX_free(kctx);
	s->enc = EVP_CIPHER_CTX_new();
	s->dec = EVP_CIPHER_CTX_new();
	if (!ok || !s->enc || !s->dec) {
		sess_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void sess_free(struct sess *s)
{
	if (!s)
		return;
	EVP_PKEY_free(s->key);
	EVP_CIPHER_CTX_free(s->enc);
	EVP_CIPHER_CTX_free(s->dec);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

const uint8_t *sess_pub(const struct sess *s)
{
	return s->pub;
}

int sess_hash(const uint8_t *data, size_t len, uint8_t out[SESS_HASH_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) <= 0 || n != SESS_HASH_LEN)
		return -EINVAL;
	return 0;
}

/* the X25519 secret shared with the peer whose public key is peer */
static int shared_secret(struct sess *s, const uint8_t *peer, uint8_t *secret, size_t *len)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, SESS_PUB_LEN);
	EVP_PKEY_CTX *ctx = pk ? EVP_PKEY_CTX_new(s->key, NULL) : NULL;
	int ok;

	ok = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, pk) > 0 &&
	     EVP_PKEY_derive(ctx, secret, len) > 0;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok ? 0 : -EINVAL;
}

int sess_agree(struct sess *s, const uint8_t peer[SESS_PUB_LEN])
{
	uint8_t buf[sizeof(kdf_label) + 64 + 2 * SESS_PUB_LEN], key[SESS_HASH_LEN];
	size_t slen = 64, n = 0;
	int ret;

	memcpy(buf, kdf_label, sizeof(kdf_label));
	n = sizeof(kdf_label);
	ret = shared_secret(s, peer, buf + n, &slen);
	if (ret)
		goto out;
	n += slen;
	memcpy(buf + n, s->server ? peer : s->pub, SESS_PUB_LEN);
	memcpy(buf + n + SESS_PUB_LEN, s->server ? s->pub : peer, SESS_PUB_LEN);
	n += 2 * SESS_PUB_LEN;
	ret = sess_hash(buf, n, key);
	if (!ret && (EVP_EncryptInit_ex(s->enc, EVP_aes_256_gcm(), NULL, key, NULL) <= 0 ||
		     EVP_DecryptInit_ex(s->dec, EVP_aes_256_gcm(), NULL, key, NULL) <= 0))
		ret = -EINVAL;
	s->ready = !ret;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(key, sizeof(key));
	return ret;
}

/* direction (0: client to server) and counter: never the same twice per key */
static void nonce(uint8_t iv[12], int from_server, uint64_t count)
{
	int i;

	memset(iv, 0, 4);
	iv[3] = from_server;
	for (i = 0; i < 8; i++)
		iv[4 + i] = count >> (56 - 8 * i);
}

int sess_seal(struct sess *s, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t iv[12];
	int n = 0, fin = 0;

	if (!s->ready || len > SESS_MAX_PLAIN)
		return -EINVAL;
	nonce(iv, s->server, s->sent);
	if (EVP_EncryptInit_ex(s->enc, NULL, NULL, NULL, iv) <= 0 ||
	    (len && EVP_EncryptUpdate(s->enc, out, &n, in, len) <= 0) ||
	    EVP_EncryptFinal_ex(s->enc, out + n, &fin) <= 0 ||
	    EVP_CIPHER_CTX_ctrl(s->enc, EVP_CTRL_GCM_GET_TAG, SESS_TAG_LEN, out + len) <= 0)
		return -EINVAL;
	s->sent++;
	return 0;
}

int sess_open(struct sess *s, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t iv[12], tag[SESS_TAG_LEN];
	size_t plen;
	int n = 0, fin = 0;

	if (!s->ready || len < SESS_TAG_LEN)
		return -EBADMSG;
	plen = len - SESS_TAG_LEN;
	memcpy(tag, in + plen, SESS_TAG_LEN);
	nonce(iv, !s->server, s->received);
	if (EVP_DecryptInit_ex(s->dec, NULL, NULL, NULL, iv) <= 0 ||
	    (plen && EVP_DecryptUpdate(s->dec, out, &n, in, plen) <= 0) ||
	    EVP_CIPHER_CTX_ctrl(s->dec, EVP_CTRL_GCM_SET_TAG, SESS_TAG_LEN, tag) <= 0 ||
	    EVP_DecryptFinal_ex(s->dec, out + n, &fin) <= 0)
		return -EBADMSG;
	s->received++;
	return 0;
}
