/*
 * rpc: munge-sealed protobuf frames over TCP (see rpc/include/rpc.h).
 *
 * Servers and event-loop clients use bufferevents; rpc_call() is a plain
 * blocking socket with poll(), so that a CLI needs no event loop.  Errors are
 * logged here, once, on stderr (the daemons send stderr to their log file),
 * with the peer they concern.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <munge.h>

#include "rpc.h"
#include "session.h"

#define MAGIC_LEN	8
#define HELLO_MAGIC	"CRJHELLO"
#define WELCOME_MAGIC	"CRJWELCM"

/* where a connection is in its handshake */
enum conn_state {
	WAIT_HELLO,		/* server: the client's HELLO comes first */
	WAIT_WELCOME,		/* client: sends wait in pending */
	READY,
};

struct rpc {
	munge_ctx_t enc;
	munge_ctx_t dec;
};

struct rpc_conn {
	struct rpc *r;
	struct bufferevent *bev;
	rpc_msg_cb on_msg;
	rpc_close_cb on_close;
	void *arg;
	void *data;
	struct rpc_listener *l;		/* the server side's listener, or NULL */
	struct rpc_conn *next;		/* in l->conns */
	int busy;			/* inside a callback: freeing waits */
	int closed;
	enum conn_state state;
	struct sess *s;
	struct rpc_peer peer;		/* who the other end is, once READY */
	struct evbuffer *pending;	/* client: packed Msgs (length, bytes) until READY */
	char addr[64];
};

struct rpc_listener {
	struct rpc *r;
	struct evconnlistener *lev;
	rpc_msg_cb on_msg;
	rpc_close_cb on_close;
	void *arg;
	struct rpc_conn *conns;
	int port;
};

static void rpc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void rpc_log(const char *fmt, ...)
{
	char buf[1024], ts[32];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;
	int n;

	strftime(ts, sizeof(ts), "%F %T", localtime_r(&now, &tm));
	n = snprintf(buf, sizeof(buf), "%s rpc[%d]: ", ts, getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	fputs(buf, stderr);
	fflush(stderr);
}

/* ------------------------------------------------------------------ munge */

static munge_ctx_t munge_ctx_for(const char *sock, int ttl_s)
{
	munge_ctx_t ctx = munge_ctx_create();

	if (!ctx)
		return NULL;
	if ((sock && munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock) != EMUNGE_SUCCESS) ||
	    (ttl_s > 0 && munge_ctx_set(ctx, MUNGE_OPT_TTL, ttl_s) != EMUNGE_SUCCESS)) {
		rpc_log("munge context (socket %s, ttl %d): %s\n", sock ? sock : "default",
			ttl_s, munge_ctx_strerror(ctx));
		munge_ctx_destroy(ctx);
		return NULL;
	}
	return ctx;
}

int rpc_new(const char *munge_socket, int ttl_s, struct rpc **out)
{
	struct rpc *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	if (!munge_socket || !*munge_socket)
		munge_socket = getenv("CRJOB_MUNGE_SOCKET");
	if (munge_socket && !*munge_socket)
		munge_socket = NULL;
	/* decoding sets the context from the credential: one context each way */
	r->enc = munge_ctx_for(munge_socket, ttl_s);
	r->dec = r->enc ? munge_ctx_for(munge_socket, 0) : NULL;
	if (!r->dec) {
		rpc_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void rpc_free(struct rpc *r)
{
	if (!r)
		return;
	if (r->enc)
		munge_ctx_destroy(r->enc);
	if (r->dec)
		munge_ctx_destroy(r->dec);
	free(r);
}

static int munge_errno(munge_err_t e)
{
	switch (e) {
	case EMUNGE_SOCKET:
		return -ECONNREFUSED;
	case EMUNGE_NO_MEMORY:
		return -ENOMEM;
	case EMUNGE_BAD_LENGTH:
		return -EMSGSIZE;
	default:
		return -EACCES;
	}
}

/* 0 and the payload of a credential from peer (for the log), or -errno */
static int cred_open(struct rpc *r, const char *peer, const uint8_t *cred, size_t len,
		     void **payload, int *plen, uid_t *uid, gid_t *gid)
{
	munge_err_t e;
	char *str;

	str = malloc(len + 1);
	if (!str)
		return -ENOMEM;
	memcpy(str, cred, len);
	str[len] = '\0';
	*payload = NULL;
	e = munge_decode(str, r->dec, payload, plen, uid, gid);
	free(str);
	if (e != EMUNGE_SUCCESS) {
		rpc_log("%s: frame rejected: bad credential: %s\n", peer,
			munge_ctx_strerror(r->dec) ?: munge_strerror(e));
		free(*payload);
		*payload = NULL;
		return munge_errno(e);
	}
	return 0;
}

/* a frame: length (type byte and body), type, body */
static int frame_new(int type, const uint8_t *body, size_t blen, uint8_t **frame, size_t *len)
{
	size_t flen = blen + 1;
	uint8_t *f;

	if (flen > RPC_MAX_FRAME)
		return -EMSGSIZE;
	f = malloc(4 + flen);
	if (!f)
		return -ENOMEM;
	f[0] = flen >> 24;
	f[1] = flen >> 16;
	f[2] = flen >> 8;
	f[3] = flen;
	f[4] = type;
	if (body)
		memcpy(f + 5, body, blen);
	*frame = f;
	*len = 4 + flen;
	return 0;
}

/* a frame of type whose body is a credential around payload */
static int frame_cred(struct rpc *r, int type, const uint8_t *payload, size_t plen,
		      uint8_t **frame, size_t *len)
{
	char *cred = NULL;
	munge_err_t e;
	int ret;

	e = munge_encode(&cred, r->enc, payload, plen);
	if (e != EMUNGE_SUCCESS) {
		rpc_log("can't authenticate a connection: munge_encode: %s\n",
			munge_ctx_strerror(r->enc) ?: munge_strerror(e));
		free(cred);
		return munge_errno(e);
	}
	ret = frame_new(type, (uint8_t *)cred, strlen(cred), frame, len);
	free(cred);
	return ret;
}

/* the client's first frame: its public key, authenticated */
static int hello_frame(struct rpc *r, struct sess *s, uint8_t **frame, size_t *len)
{
	uint8_t p[MAGIC_LEN + SESS_PUB_LEN];

	memcpy(p, HELLO_MAGIC, MAGIC_LEN);
	memcpy(p + MAGIC_LEN, sess_pub(s), SESS_PUB_LEN);
	return frame_cred(r, RPC_FRAME_HELLO, p, sizeof(p), frame, len);
}

int rpc_hello_frame(struct rpc *r, uint8_t **frame, size_t *len)
{
	struct sess *s;
	int ret = sess_new(0, &s);

	if (ret)
		return ret;
	ret = hello_frame(r, s, frame, len);
	sess_free(s);
	return ret;
}

/*
 * Server: a HELLO from peer.  The session *out with its key, the sender's
 * uid/gid and the WELCOME frame to answer with: our public key and a hash of
 * theirs, so that the answer is bound to this HELLO.
 */
static int hello_accept(struct rpc *r, const char *peer, const uint8_t *body, size_t blen,
			struct sess **out, uid_t *uid, gid_t *gid, uint8_t **frame, size_t *len)
{
	uint8_t w[MAGIC_LEN + SESS_PUB_LEN + SESS_HASH_LEN];
	struct sess *s = NULL;
	uint8_t *p;
	int plen, ret;

	ret = cred_open(r, peer, body, blen, (void **)&p, &plen, uid, gid);
	if (ret)
		return ret;
	if (plen != MAGIC_LEN + SESS_PUB_LEN || memcmp(p, HELLO_MAGIC, MAGIC_LEN)) {
		rpc_log("%s: frame rejected: uid %u sent %d bytes that are not a HELLO\n", peer,
			(unsigned)*uid, plen);
		ret = -EBADMSG;
		goto out;
	}
	ret = sess_new(1, &s);
	if (!ret)
		ret = sess_agree(s, p + MAGIC_LEN);
	if (ret) {
		rpc_log("%s: frame rejected: no key from uid %u's HELLO\n", peer, (unsigned)*uid);
		goto out;
	}
	memcpy(w, WELCOME_MAGIC, MAGIC_LEN);
	memcpy(w + MAGIC_LEN, sess_pub(s), SESS_PUB_LEN);
	ret = sess_hash(p + MAGIC_LEN, SESS_PUB_LEN, w + MAGIC_LEN + SESS_PUB_LEN);
	if (!ret)
		ret = frame_cred(r, RPC_FRAME_WELCOME, w, sizeof(w), frame, len);
out:
	free(p);
	if (ret)
		sess_free(s);
	else
		*out = s;
	return ret;
}

/* Client: the server's WELCOME to our HELLO; its uid/gid, and s's key */
static int welcome_check(struct rpc *r, const char *peer, struct sess *s, const uint8_t *body,
			 size_t blen, uid_t *uid, gid_t *gid)
{
	uint8_t hash[SESS_HASH_LEN], *p;
	int plen, ret;

	ret = cred_open(r, peer, body, blen, (void **)&p, &plen, uid, gid);
	if (ret)
		return ret;
	ret = sess_hash(sess_pub(s), SESS_PUB_LEN, hash);
	if (!ret && (plen != MAGIC_LEN + SESS_PUB_LEN + SESS_HASH_LEN ||
		     memcmp(p, WELCOME_MAGIC, MAGIC_LEN) ||
		     memcmp(p + MAGIC_LEN + SESS_PUB_LEN, hash, SESS_HASH_LEN))) {
		rpc_log("%s: frame rejected: uid %u sent no WELCOME to our HELLO\n", peer,
			(unsigned)*uid);
		ret = -EBADMSG;
	}
	if (!ret && sess_agree(s, p + MAGIC_LEN)) {
		rpc_log("%s: frame rejected: no key from uid %u's WELCOME\n", peer,
			(unsigned)*uid);
		ret = -EBADMSG;
	}
	free(p);
	return ret;
}

/* a DATA frame of s around len bytes of plain */
static int data_frame(struct sess *s, const uint8_t *plain, size_t len, uint8_t **frame,
		      size_t *flen)
{
	uint8_t *f;
	int ret;

	if (len + SESS_TAG_LEN + 1 > RPC_MAX_FRAME)
		return -EMSGSIZE;
	ret = frame_new(RPC_FRAME_DATA, NULL, len + SESS_TAG_LEN, &f, flen);
	if (ret)
		return ret;
	ret = sess_seal(s, plain, len, f + 5);
	if (ret) {
		free(f);
		return ret;
	}
	*frame = f;
	return 0;
}

/* a DATA frame of s around Msg m */
static int msg_frame(struct sess *s, const Crjob__Msg *m, uint8_t **frame, size_t *len)
{
	size_t plen = crjob__msg__get_packed_size(m);
	uint8_t *p = malloc(plen ? plen : 1);
	int ret;

	if (!p)
		return -ENOMEM;
	crjob__msg__pack(m, p);
	ret = data_frame(s, p, plen, frame, len);
	free(p);
	if (ret == -EMSGSIZE)
		rpc_log("can't send %s: %zu bytes, more than %u\n", rpc_op_name(m->op), plen,
			RPC_MAX_FRAME);
	return ret;
}

/* the Msg in a DATA frame's body from peer (uid, for the log) */
static int data_open(struct sess *s, const char *peer, uid_t uid, const uint8_t *body,
		     size_t blen, Crjob__Msg **m)
{
	uint8_t *p;
	int ret;

	if (blen < SESS_TAG_LEN) {
		rpc_log("%s: frame rejected: %zu bytes of data\n", peer, blen);
		return -EBADMSG;
	}
	p = malloc(blen - SESS_TAG_LEN + 1);
	if (!p)
		return -ENOMEM;
	ret = sess_open(s, body, blen, p);
	if (ret) {
		rpc_log("%s: frame rejected: not the next frame of uid %u's session "
			"(forged, altered or replayed)\n", peer, (unsigned)uid);
		goto out;
	}
	*m = crjob__msg__unpack(NULL, blen - SESS_TAG_LEN, p);
	if (!*m) {
		rpc_log("%s: frame rejected: uid %u sent %zu bytes that are not a Msg\n", peer,
			(unsigned)uid, blen - SESS_TAG_LEN);
		ret = -EBADMSG;
	}
out:
	free(p);
	return ret;
}

/* ------------------------------------------------------------------ helpers */

const char *rpc_op_name(Crjob__Op op)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&crjob__op__descriptor, op);

	return v ? v->name : "UNKNOWN-OP";
}

int rpc_parse_hostport(const char *hostport, int default_port, struct sockaddr_in *sa)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	char host[256];
	const char *colon;
	long port = default_port;
	char *end;
	size_t hlen;

	if (!hostport)
		return -EINVAL;
	colon = strrchr(hostport, ':');
	hlen = colon ? (size_t)(colon - hostport) : strlen(hostport);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, hlen);
	host[hlen] = '\0';
	if (colon) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end)
			return -EINVAL;
	}
	if (port < 0 || port > 65535)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (!*host || !strcmp(host, "*")) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
		return 0;
	if (getaddrinfo(host, NULL, &hints, &ai))
		return -EINVAL;
	sa->sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
	freeaddrinfo(ai);
	return 0;
}

static void sa_str(const struct sockaddr_in *sa, char *buf, size_t size)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(buf, size, "%s:%d", ip, ntohs(sa->sin_port));
}

/* ------------------------------------------------------------------ connections */

static void conn_free(struct rpc_conn *c)
{
	struct rpc_conn **p;

	if (c->l)
		for (p = &c->l->conns; *p; p = &(*p)->next)
			if (*p == c) {
				*p = c->next;
				break;
			}
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->pending)
		evbuffer_free(c->pending);
	sess_free(c->s);
	free(c);
}

/* the end of a connection: on_close once, then freed (later, if in a callback) */
static void conn_closed(struct rpc_conn *c, int err)
{
	if (c->closed)
		return;
	c->closed = 1;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->on_close) {
		c->busy++;
		c->on_close(c, err, c->arg);
		c->busy--;
	}
	if (!c->busy)
		conn_free(c);
}

void rpc_conn_close(struct rpc_conn *c)
{
	if (!c || c->closed)
		return;
	c->closed = 1;
	if (!c->busy)
		conn_free(c);
}

/* queue a frame on c, or -ENOMEM */
static int conn_write(struct rpc_conn *c, uint8_t *frame, size_t len)
{
	int ret = bufferevent_write(c->bev, frame, len) ? -ENOMEM : 0;

	free(frame);
	if (ret)
		rpc_log("%s: out of memory for a frame\n", c->addr);
	return ret;
}

/* client: the Msgs sent before the handshake ended go out now, in order */
static int conn_flush_pending(struct rpc_conn *c)
{
	uint8_t hdr[4], *frame;
	uint32_t n;
	size_t len;
	int ret = 0;

	while (!ret && evbuffer_get_length(c->pending) >= 4) {
		evbuffer_remove(c->pending, hdr, 4);
		n = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
		ret = data_frame(c->s, evbuffer_pullup(c->pending, n), n, &frame, &len);
		evbuffer_drain(c->pending, n);
		if (!ret)
			ret = conn_write(c, frame, len);
	}
	return ret;
}

/* a handshake frame of type with body: the connection becomes READY, or -errno */
static int conn_handshake(struct rpc_conn *c, int type, const uint8_t *body, size_t blen)
{
	uint8_t *frame;
	size_t len;
	int ret;

	if (c->state == WAIT_HELLO && type == RPC_FRAME_HELLO) {
		ret = hello_accept(c->r, c->addr, body, blen, &c->s, &c->peer.uid, &c->peer.gid,
				   &frame, &len);
		if (!ret)
			ret = conn_write(c, frame, len);
	} else if (c->state == WAIT_WELCOME && type == RPC_FRAME_WELCOME) {
		ret = welcome_check(c->r, c->addr, c->s, body, blen, &c->peer.uid,
				    &c->peer.gid);
		if (!ret)
			ret = conn_flush_pending(c);
	} else {
		rpc_log("%s: frame rejected: type %d before the handshake ended\n", c->addr,
			type);
		return -EPROTO;
	}
	if (!ret) {
		c->state = READY;
		snprintf(c->peer.addr, sizeof(c->peer.addr), "%s", c->addr);
	}
	return ret;
}

/* one complete frame in the input buffer: 1, none yet: 0, a bad one: -errno */
static int conn_one_frame(struct rpc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	Crjob__Msg *m = NULL;
	uint8_t hdr[5], *body;
	uint32_t len;
	int ret;

	if (evbuffer_get_length(in) < 4)
		return 0;
	evbuffer_copyout(in, hdr, 4);
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len == 0 || len > RPC_MAX_FRAME) {
		rpc_log("%s: frame rejected: %u bytes (at most %u)\n", c->addr, len,
			RPC_MAX_FRAME);
		return -EMSGSIZE;
	}
	if (evbuffer_get_length(in) < 4 + (size_t)len)
		return 0;
	evbuffer_remove(in, hdr, 5);
	body = evbuffer_pullup(in, len - 1);
	if (c->state != READY)
		ret = conn_handshake(c, hdr[4], body, len - 1);
	else if (hdr[4] != RPC_FRAME_DATA)
		ret = -EPROTO;
	else
		ret = data_open(c->s, c->addr, c->peer.uid, body, len - 1, &m);
	evbuffer_drain(in, len - 1);
	if (ret == -EPROTO && c->state == READY)
		rpc_log("%s: frame rejected: type %d after the handshake\n", c->addr, hdr[4]);
	if (ret || !m)
		return ret ? ret : 1;
	c->busy++;
	c->on_msg(c, m, &c->peer, c->arg);
	c->busy--;
	crjob__msg__free_unpacked(m, NULL);
	return 1;
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct rpc_conn *c = arg;
	int ret;

	c->busy++;
	do
		ret = c->closed ? 0 : conn_one_frame(c);
	while (ret > 0);
	c->busy--;
	if (ret < 0)
		conn_closed(c, ret);
	else if (c->closed && !c->busy)
		conn_free(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct rpc_conn *c = arg;
	int err = 0;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_ERROR) {
		err = -EVUTIL_SOCKET_ERROR();
		if (!err)
			err = -EIO;
		rpc_log("%s: connection: %s\n", c->addr, strerror(-err));
	} else if (!(what & BEV_EVENT_EOF)) {
		return;
	}
	conn_closed(c, err);
}

static struct rpc_conn *conn_new(struct rpc *r, struct event_base *base, evutil_socket_t fd,
				 rpc_msg_cb on_msg, rpc_close_cb on_close, void *arg)
{
	struct rpc_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		free(c);
		return NULL;
	}
	c->r = r;
	c->on_msg = on_msg;
	c->on_close = on_close;
	c->arg = arg;
	bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
	return c;
}

int rpc_send(struct rpc_conn *c, const Crjob__Msg *m)
{
	size_t plen = crjob__msg__get_packed_size(m);
	uint8_t hdr[4], *frame, *p;
	size_t len;
	int ret;

	if (c->closed)
		return -ENOTCONN;
	if (c->state == READY) {
		ret = msg_frame(c->s, m, &frame, &len);
		return ret ? ret : conn_write(c, frame, len);
	}
	/* a server speaks after the HELLO only */
	if (!c->pending)
		return -ENOTCONN;
	/* before the WELCOME there is no key yet: kept packed until then */
	if (plen + SESS_TAG_LEN + 1 > RPC_MAX_FRAME) {
		rpc_log("can't send %s: %zu bytes, more than %u\n", rpc_op_name(m->op), plen,
			RPC_MAX_FRAME);
		return -EMSGSIZE;
	}
	p = malloc(plen ? plen : 1);
	if (!p)
		return -ENOMEM;
	crjob__msg__pack(m, p);
	hdr[0] = plen >> 24;
	hdr[1] = plen >> 16;
	hdr[2] = plen >> 8;
	hdr[3] = plen;
	ret = evbuffer_add(c->pending, hdr, 4) || evbuffer_add(c->pending, p, plen) ? -ENOMEM : 0;
	free(p);
	return ret;
}

const char *rpc_conn_addr(const struct rpc_conn *c)
{
	return c->addr;
}

void rpc_conn_set_data(struct rpc_conn *c, void *data)
{
	c->data = data;
}

void *rpc_conn_data(const struct rpc_conn *c)
{
	return c->data;
}

/*
 * A peer whose machine died sends no FIN: keepalive probes find it within
 * about 20 s, so that what waits on the connection (a frozen job) is told.
 */
static void set_keepalive(evutil_socket_t fd)
{
	int one = 1, idle = 10, intvl = 3, cnt = 3;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------ servers */

static void listener_accept(struct evconnlistener *lev, evutil_socket_t fd,
			    struct sockaddr *sa, int salen, void *arg)
{
	struct rpc_listener *l = arg;
	struct rpc_conn *c;

	set_keepalive(fd);
	c = conn_new(l->r, evconnlistener_get_base(lev), fd, l->on_msg, l->on_close, l->arg);
	if (!c) {
		rpc_log("out of memory for a connection: closed\n");
		close(fd);
		return;
	}
	sa_str((struct sockaddr_in *)sa, c->addr, sizeof(c->addr));
	c->l = l;
	c->next = l->conns;
	l->conns = c;
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

int rpc_listen(struct rpc *r, struct event_base *base, const char *hostport,
	       rpc_msg_cb on_msg, rpc_close_cb on_close, void *arg,
	       struct rpc_listener **out)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	struct rpc_listener *l;
	int ret;

	ret = rpc_parse_hostport(hostport, 0, &sa);
	if (ret) {
		rpc_log("listen: bad address '%s' (HOST:PORT)\n", hostport);
		return ret;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->r = r;
	l->on_msg = on_msg;
	l->on_close = on_close;
	l->arg = arg;
	l->lev = evconnlistener_new_bind(base, listener_accept, l,
					 LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
					 LEV_OPT_CLOSE_ON_EXEC, 64,
					 (struct sockaddr *)&sa, sizeof(sa));
	if (!l->lev) {
		ret = -errno ?: -EADDRINUSE;
		rpc_log("listen on %s: %s\n", hostport, strerror(-ret));
		free(l);
		return ret;
	}
	getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&sa, &salen);
	l->port = ntohs(sa.sin_port);
	*out = l;
	return 0;
}

int rpc_listener_port(const struct rpc_listener *l)
{
	return l->port;
}

void rpc_listener_free(struct rpc_listener *l)
{
	if (!l)
		return;
	while (l->conns) {
		struct rpc_conn *c = l->conns;

		l->conns = c->next;
		c->l = NULL;
		rpc_conn_close(c);
	}
	evconnlistener_free(l->lev);
	free(l);
}

/* ------------------------------------------------------------------ clients */

int rpc_connect(struct rpc *r, struct event_base *base, const char *hostport,
		rpc_msg_cb on_msg, rpc_close_cb on_close, void *arg, struct rpc_conn **out)
{
	struct sockaddr_in sa;
	struct rpc_conn *c;
	uint8_t *frame;
	size_t len;
	int ret;

	ret = rpc_parse_hostport(hostport, 0, &sa);
	if (ret) {
		rpc_log("connect: bad address '%s' (HOST:PORT)\n", hostport);
		return ret;
	}
	c = conn_new(r, base, -1, on_msg, on_close, arg);
	if (!c)
		return -ENOMEM;
	sa_str(&sa, c->addr, sizeof(c->addr));
	c->state = WAIT_WELCOME;
	c->pending = evbuffer_new();
	ret = c->pending ? sess_new(0, &c->s) : -ENOMEM;
	if (ret)
		goto err;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -EVUTIL_SOCKET_ERROR() ?: -ECONNREFUSED;
		rpc_log("%s: connect: %s\n", c->addr, strerror(-ret));
		goto err;
	}
	/* goes out once connected */
	ret = hello_frame(r, c->s, &frame, &len);
	if (!ret)
		ret = conn_write(c, frame, len);
	if (ret)
		goto err;
	set_keepalive(bufferevent_getfd(c->bev));
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	*out = c;
	return 0;
err:
	conn_free(c);
	return ret;
}

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? ms : 0;
}

/* wait for fd to be ready for events, or the deadline */
static int wait_fd(int fd, short events, const struct timespec *deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, ms_left(deadline));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

static int call_connect(const struct sockaddr_in *sa, const struct timespec *deadline)
{
	socklen_t elen = sizeof(int);
	int fd, err = 0, ret;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
		ret = -errno;
		goto err;
	}
	ret = wait_fd(fd, POLLOUT, deadline);
	if (ret)
		goto err;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
	if (err) {
		ret = -err;
		goto err;
	}
	return fd;
err:
	close(fd);
	return ret;
}

static int call_io(int fd, uint8_t *buf, size_t len, int out, const struct timespec *deadline)
{
	size_t done = 0;
	ssize_t n;
	int ret;

	while (done < len) {
		ret = wait_fd(fd, out ? POLLOUT : POLLIN, deadline);
		if (ret)
			return ret;
		n = out ? send(fd, buf + done, len - done, MSG_NOSIGNAL) :
			  recv(fd, buf + done, len - done, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		done += n;
	}
	return 0;
}

/* the blocking client's side of one connection */
struct call {
	struct rpc *r;
	int fd;
	struct sess *s;
	struct timespec deadline;
	struct rpc_peer peer;
};

static int call_send(struct call *k, uint8_t *frame, size_t len)
{
	int ret = call_io(k->fd, frame, len, 1, &k->deadline);

	free(frame);
	return ret;
}

/* the next frame: its type and body (the caller frees it) */
static int call_recv_frame(struct call *k, int *type, uint8_t **body, size_t *blen)
{
	uint8_t hdr[5];
	uint32_t len;
	int ret;

	ret = call_io(k->fd, hdr, 4, 0, &k->deadline);
	if (ret)
		return ret;
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len == 0 || len > RPC_MAX_FRAME) {
		rpc_log("%s: frame rejected: %u bytes (at most %u)\n", k->peer.addr, len,
			RPC_MAX_FRAME);
		return -EMSGSIZE;
	}
	ret = call_io(k->fd, hdr + 4, 1, 0, &k->deadline);
	if (ret)
		return ret;
	*type = hdr[4];
	*blen = len - 1;
	*body = malloc(len);
	if (!*body)
		return -ENOMEM;
	ret = call_io(k->fd, *body, len - 1, 0, &k->deadline);
	if (ret) {
		free(*body);
		*body = NULL;
	}
	return ret;
}

static int call_recv(struct call *k, Crjob__Msg **m)
{
	uint8_t *body;
	size_t blen;
	int type, ret;

	ret = call_recv_frame(k, &type, &body, &blen);
	if (ret)
		return ret;
	if (type != RPC_FRAME_DATA) {
		rpc_log("%s: frame rejected: type %d after the handshake\n", k->peer.addr, type);
		ret = -EPROTO;
	} else {
		ret = data_open(k->s, k->peer.addr, k->peer.uid, body, blen, m);
	}
	free(body);
	return ret;
}

static void call_close(struct call *k)
{
	if (k->fd >= 0)
		close(k->fd);
	sess_free(k->s);
}

/* connect to hostport and authenticate both ways, within timeout_ms */
static int call_open(struct rpc *r, const char *hostport, int timeout_ms, struct call *k)
{
	struct sockaddr_in sa;
	uint8_t *frame, *body;
	size_t len;
	int type, ret;

	memset(k, 0, sizeof(*k));
	k->r = r;
	k->fd = -1;
	ret = rpc_parse_hostport(hostport, 0, &sa);
	if (ret) {
		rpc_log("bad address '%s' (HOST:PORT)\n", hostport);
		return ret;
	}
	sa_str(&sa, k->peer.addr, sizeof(k->peer.addr));
	clock_gettime(CLOCK_MONOTONIC, &k->deadline);
	k->deadline.tv_sec += timeout_ms / 1000;
	k->deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (k->deadline.tv_nsec >= 1000000000L) {
		k->deadline.tv_sec++;
		k->deadline.tv_nsec -= 1000000000L;
	}
	ret = sess_new(0, &k->s);
	if (!ret)
		ret = hello_frame(r, k->s, &frame, &len);
	if (ret)
		return ret;
	k->fd = call_connect(&sa, &k->deadline);
	if (k->fd < 0) {
		free(frame);
		return k->fd;
	}
	ret = call_send(k, frame, len);
	if (!ret)
		ret = call_recv_frame(k, &type, &body, &len);
	if (ret)
		return ret;
	if (type == RPC_FRAME_WELCOME) {
		ret = welcome_check(r, k->peer.addr, k->s, body, len, &k->peer.uid,
				    &k->peer.gid);
	} else {
		rpc_log("%s: frame rejected: type %d, not a WELCOME\n", k->peer.addr, type);
		ret = -EPROTO;
	}
	free(body);
	return ret;
}

/* errors that the functions above logged already */
static bool logged(int err)
{
	return err == -EMSGSIZE || err == -EACCES || err == -EBADMSG || err == -EPROTO;
}

int rpc_call(struct rpc *r, const char *hostport, const Crjob__Msg *req, int timeout_ms,
	     rpc_event_cb on_event, void *arg, Crjob__Msg **reply)
{
	Crjob__Msg *m;
	struct call k;
	uint8_t *frame;
	size_t len;
	int ret;

	ret = call_open(r, hostport, timeout_ms, &k);
	if (!ret)
		ret = msg_frame(k.s, req, &frame, &len);
	if (!ret)
		ret = call_send(&k, frame, len);
	while (!ret) {
		ret = call_recv(&k, &m);
		if (ret)
			break;
		if (m->id == req->id && m->kind == CRJOB__KIND__REPLY) {
			*reply = m;
			break;
		}
		if (m->id == req->id && m->kind == CRJOB__KIND__EVENT && on_event)
			on_event(m, arg);
		crjob__msg__free_unpacked(m, NULL);
	}
	call_close(&k);
	if (ret && !logged(ret))
		rpc_log("%s: %s: %s\n", k.peer.addr, rpc_op_name(req->op), strerror(-ret));
	return ret;
}

/* 0 if a frame came back, -ECONNRESET if the peer closed instead */
static int call_answered(struct call *k)
{
	uint8_t *body;
	size_t blen;
	int type, ret;

	ret = call_recv_frame(k, &type, &body, &blen);
	if (!ret)
		free(body);
	return ret;
}

int rpc_call_raw(struct rpc *r, const char *hostport, const void *payload, size_t len,
		 int flags, int timeout_ms)
{
	uint8_t *frame, *copy = NULL;
	struct call k;
	size_t flen;
	int ret;

	ret = call_open(r, hostport, timeout_ms, &k);
	if (!ret)
		ret = data_frame(k.s, payload, len, &frame, &flen);
	if (ret)
		goto out;
	if (flags & RPC_RAW_TAMPER)
		frame[flen - 1] ^= 1;
	if (flags & RPC_RAW_REPLAY) {
		copy = malloc(flen);
		if (!copy) {
			free(frame);
			ret = -ENOMEM;
			goto out;
		}
		memcpy(copy, frame, flen);
	}
	ret = call_send(&k, frame, flen);
	ret = ret ?: call_answered(&k);
	if (!ret && copy) {
		ret = call_send(&k, copy, flen);
		copy = NULL;
		ret = ret ?: call_answered(&k);
	}
	free(copy);
out:
	call_close(&k);
	return ret;
}
