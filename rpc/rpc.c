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

int rpc_seal(struct rpc *r, const Crjob__Msg *m, uint8_t **frame, size_t *len)
{
	size_t plen = crjob__msg__get_packed_size(m);
	uint8_t *payload, *f;
	char *cred = NULL;
	munge_err_t e;
	size_t clen;

	payload = malloc(plen ? plen : 1);
	if (!payload)
		return -ENOMEM;
	crjob__msg__pack(m, payload);
	e = munge_encode(&cred, r->enc, payload, plen);
	free(payload);
	if (e != EMUNGE_SUCCESS) {
		rpc_log("can't seal %s: munge_encode: %s\n", rpc_op_name(m->op),
			munge_ctx_strerror(r->enc) ?: munge_strerror(e));
		free(cred);
		return munge_errno(e);
	}
	clen = strlen(cred);
	if (clen > RPC_MAX_FRAME) {
		rpc_log("can't send %s: %zu bytes sealed, more than %u\n", rpc_op_name(m->op),
			clen, RPC_MAX_FRAME);
		free(cred);
		return -EMSGSIZE;
	}
	f = malloc(4 + clen);
	if (!f) {
		free(cred);
		return -ENOMEM;
	}
	f[0] = clen >> 24;
	f[1] = clen >> 16;
	f[2] = clen >> 8;
	f[3] = clen;
	memcpy(f + 4, cred, clen);
	free(cred);
	*frame = f;
	*len = 4 + clen;
	return 0;
}

/* decode a credential (from peer, for the log) and unpack its Msg */
static int unseal(struct rpc *r, const char *peer, const uint8_t *cred, size_t len,
		  Crjob__Msg **m, uid_t *uid, gid_t *gid)
{
	void *payload = NULL;
	char *str;
	munge_err_t e;
	int plen = 0;

	str = malloc(len + 1);
	if (!str)
		return -ENOMEM;
	memcpy(str, cred, len);
	str[len] = '\0';
	e = munge_decode(str, r->dec, &payload, &plen, uid, gid);
	free(str);
	if (e != EMUNGE_SUCCESS) {
		rpc_log("%s: frame rejected: bad credential: %s\n", peer,
			munge_ctx_strerror(r->dec) ?: munge_strerror(e));
		free(payload);
		return munge_errno(e);
	}
	*m = crjob__msg__unpack(NULL, plen, payload);
	free(payload);
	if (!*m) {
		rpc_log("%s: frame rejected: uid %u sent %d bytes that are not a Msg\n", peer,
			(unsigned)*uid, plen);
		return -EBADMSG;
	}
	return 0;
}

int rpc_unseal(struct rpc *r, const uint8_t *cred, size_t len, Crjob__Msg **m,
	       uid_t *uid, gid_t *gid)
{
	return unseal(r, "frame", cred, len, m, uid, gid);
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

/* one complete frame in the input buffer: 1, none yet: 0, a bad one: -errno */
static int conn_one_frame(struct rpc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	Crjob__Msg *m = NULL;
	struct rpc_peer peer;
	uint8_t hdr[4];
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
	evbuffer_drain(in, 4);
	ret = unseal(c->r, c->addr, evbuffer_pullup(in, len), len, &m, &peer.uid, &peer.gid);
	evbuffer_drain(in, len);
	if (ret)
		return ret;
	snprintf(peer.addr, sizeof(peer.addr), "%s", c->addr);
	c->busy++;
	c->on_msg(c, m, &peer, c->arg);
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
	uint8_t *frame;
	size_t len;
	int ret;

	if (c->closed)
		return -ENOTCONN;
	ret = rpc_seal(c->r, m, &frame, &len);
	if (ret)
		return ret;
	if (bufferevent_write(c->bev, frame, len)) {
		rpc_log("%s: can't queue %s\n", c->addr, rpc_op_name(m->op));
		ret = -ENOMEM;
	}
	free(frame);
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
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -EVUTIL_SOCKET_ERROR() ?: -ECONNREFUSED;
		rpc_log("%s: connect: %s\n", c->addr, strerror(-ret));
		conn_free(c);
		return ret;
	}
	set_keepalive(bufferevent_getfd(c->bev));
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	*out = c;
	return 0;
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

static int call_recv(struct rpc *r, int fd, const char *addr, const struct timespec *deadline,
		     Crjob__Msg **m)
{
	uint8_t hdr[4], *cred;
	uid_t uid;
	gid_t gid;
	uint32_t len;
	int ret;

	ret = call_io(fd, hdr, 4, 0, deadline);
	if (ret)
		return ret;
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len == 0 || len > RPC_MAX_FRAME) {
		rpc_log("%s: frame rejected: %u bytes (at most %u)\n", addr, len, RPC_MAX_FRAME);
		return -EMSGSIZE;
	}
	cred = malloc(len);
	if (!cred)
		return -ENOMEM;
	ret = call_io(fd, cred, len, 0, deadline);
	if (!ret)
		ret = unseal(r, addr, cred, len, m, &uid, &gid);
	free(cred);
	return ret;
}

int rpc_call(struct rpc *r, const char *hostport, const Crjob__Msg *req, int timeout_ms,
	     rpc_event_cb on_event, void *arg, Crjob__Msg **reply)
{
	struct timespec deadline;
	struct sockaddr_in sa;
	Crjob__Msg *m;
	char addr[64];
	uint8_t *frame;
	size_t len;
	int fd, ret;

	ret = rpc_parse_hostport(hostport, 0, &sa);
	if (ret) {
		rpc_log("bad address '%s' (HOST:PORT)\n", hostport);
		return ret;
	}
	sa_str(&sa, addr, sizeof(addr));
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	ret = rpc_seal(r, req, &frame, &len);
	if (ret)
		return ret;
	fd = call_connect(&sa, &deadline);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = call_io(fd, frame, len, 1, &deadline);
	while (!ret) {
		ret = call_recv(r, fd, addr, &deadline, &m);
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
	close(fd);
out:
	if (ret && ret != -EMSGSIZE && ret != -EACCES && ret != -EBADMSG)
		rpc_log("%s: %s: %s\n", addr, rpc_op_name(req->op), strerror(-ret));
	free(frame);
	return ret;
}
