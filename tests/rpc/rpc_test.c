/*
 * rpc_test GOOD_MUNGE_SOCKET OTHER_MUNGE_SOCKET: checks of rpc/ against a
 * server it forks (an echo server on librpc's event loop).  OTHER is a munged
 * with another key.  One "PASS name: ..." or "FAIL name: ..." line per check;
 * exits 1 if any failed.  The server logs each rejection on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <munge.h>

#include "rpc.h"

static int failed;

#define CHECK(name, cond, fmt, ...)							\
	do {										\
		if (cond) {								\
			printf("PASS %s: " fmt "\n", name, ##__VA_ARGS__);		\
		} else {								\
			printf("FAIL %s: " fmt "\n", name, ##__VA_ARGS__);		\
			failed = 1;							\
		}									\
		fflush(stdout);								\
	} while (0)

/* ------------------------------------------------------------------ the server */

static void srv_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		    void *arg)
{
	Crjob__Msg r = CRJOB__MSG__INIT;
	char text[128];

	/* a PING of job "events" gets two EVENTs before its REPLY */
	if (m->job && !strcmp(m->job, "events")) {
		Crjob__Msg ev = CRJOB__MSG__INIT;

		ev.kind = CRJOB__KIND__EVENT;
		ev.id = m->id;
		ev.op = m->op;
		rpc_send(c, &ev);
		rpc_send(c, &ev);
	}
	/* the peer's address, as the daemons log it */
	snprintf(text, sizeof(text), "echo %s uid %u job %s from %.10s", rpc_op_name(m->op),
		 (unsigned)from->uid, m->job ? m->job : "-", from->addr);
	r.kind = CRJOB__KIND__REPLY;
	r.id = m->id;
	r.op = m->op;
	r.message = text;
	if (m->job && !strcmp(m->job, "close")) {
		rpc_conn_close(c);
		return;
	}
	rpc_send(c, &r);
}

static void srv_close(struct rpc_conn *c, int err, void *arg)
{
}

/* fork the echo server; its port, or -1 */
static int server_start(const char *sock, pid_t *pid)
{
	struct rpc_listener *l;
	struct event_base *base;
	struct rpc *r;
	int p[2], port = -1;

	if (pipe(p))
		return -1;
	*pid = fork();
	if (*pid < 0)
		return -1;
	if (*pid == 0) {
		close(p[0]);
		base = event_base_new();
		if (!base || rpc_new(sock, 0, &r) ||
		    rpc_listen(r, base, "127.0.0.1:0", srv_msg, srv_close, NULL, &l))
			_exit(1);
		port = rpc_listener_port(l);
		if (write(p[1], &port, sizeof(port)) != sizeof(port))
			_exit(1);
		close(p[1]);
		event_base_dispatch(base);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &port, sizeof(port)) != sizeof(port))
		port = -1;
	close(p[0]);
	return port;
}

/* ------------------------------------------------------------------ clients */

static int events_seen;

static void count_event(const Crjob__Msg *ev, void *arg)
{
	events_seen++;
}

/* a PING through rpc_call; 0 if the echo came back right */
static int ping(struct rpc *r, const char *addr, const char *job, uint64_t id, char *why,
		size_t size)
{
	Crjob__Msg req = CRJOB__MSG__INIT, *rep = NULL;
	char want[128];
	int ret;

	req.kind = CRJOB__KIND__REQUEST;
	req.id = id;
	req.op = CRJOB__OP__PING;
	req.job = (char *)job;
	ret = rpc_call(r, addr, &req, 5000, count_event, NULL, &rep);
	if (ret) {
		snprintf(why, size, "rpc_call: %s", strerror(-ret));
		return ret;
	}
	snprintf(want, sizeof(want), "echo PING uid %u job %s from 127.0.0.1:", (unsigned)getuid(),
		 job);
	if (rep->id != id || !rep->message || strcmp(rep->message, want)) {
		snprintf(why, size, "reply id %llu message '%s'", (unsigned long long)rep->id,
			 rep->message ? rep->message : "(none)");
		ret = -EBADMSG;
	} else {
		snprintf(why, size, "%s", rep->message);
	}
	crjob__msg__free_unpacked(rep, NULL);
	return ret;
}

static int tcp_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Send raw bytes on a new connection; 1 if the server closed it without
 * answering, 0 if it answered, -1 on a local error.
 */
static int raw_send(int port, const void *buf, size_t len)
{
	struct pollfd p = { .events = POLLIN };
	char junk[4096];
	ssize_t n;

	p.fd = tcp_connect(port);
	if (p.fd < 0)
		return -1;
	if (write(p.fd, buf, len) != (ssize_t)len) {
		close(p.fd);
		return -1;
	}
	if (poll(&p, 1, 5000) != 1) {
		close(p.fd);
		return -1;
	}
	n = read(p.fd, junk, sizeof(junk));
	close(p.fd);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void put_len(uint8_t *f, uint32_t len)
{
	f[0] = len >> 24;
	f[1] = len >> 16;
	f[2] = len >> 8;
	f[3] = len;
}

/* a frame of type around body, as sent on the wire */
static int frame_of(int type, const void *body, size_t blen, uint8_t **frame, size_t *len)
{
	*frame = malloc(5 + blen);
	if (!*frame)
		return -1;
	put_len(*frame, blen + 1);
	(*frame)[4] = type;
	memcpy(*frame + 5, body, blen);
	*len = 5 + blen;
	return 0;
}

/* a packed PING of job "raw" */
static size_t packed_ping(uint64_t id, uint8_t *buf, size_t size)
{
	Crjob__Msg req = CRJOB__MSG__INIT;

	req.kind = CRJOB__KIND__REQUEST;
	req.id = id;
	req.op = CRJOB__OP__PING;
	req.job = "raw";
	if (crjob__msg__get_packed_size(&req) > size)
		return 0;
	return crjob__msg__pack(&req, buf);
}

/* a frame of type around a credential of payload, from munged at sock */
static int cred_frame(const char *sock, int type, const void *payload, size_t plen,
		      uint8_t **frame, size_t *len)
{
	munge_ctx_t ctx = munge_ctx_create();
	char *cred;
	size_t clen;
	int ret = -1;

	munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock);
	if (munge_encode(&cred, ctx, payload, plen) == EMUNGE_SUCCESS) {
		clen = strlen(cred);
		*frame = malloc(5 + clen);
		put_len(*frame, clen + 1);
		(*frame)[4] = type;
		memcpy(*frame + 5, cred, clen);
		*len = 5 + clen;
		free(cred);
		ret = 0;
	}
	munge_ctx_destroy(ctx);
	return ret;
}

/* ------------------------------------------------------------------ async client */

struct async {
	struct event_base *base;
	int replies;
	int closed;
};

static void async_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		      void *arg)
{
	struct async *a = arg;

	if (m->kind == CRJOB__KIND__REPLY && m->id == 77)
		a->replies++;
	if (a->replies == 2)
		event_base_loopbreak(a->base);
}

static void async_close(struct rpc_conn *c, int err, void *arg)
{
	struct async *a = arg;

	a->closed = 1;
	event_base_loopbreak(a->base);
}

static void check_async(struct rpc *r, const char *addr)
{
	Crjob__Msg req = CRJOB__MSG__INIT;
	struct async a = { .base = event_base_new() };
	struct timeval tv = { 5, 0 };
	struct rpc_conn *c;
	int ret;

	req.kind = CRJOB__KIND__REQUEST;
	req.id = 77;
	req.op = CRJOB__OP__STATUS;
	req.job = "async";
	ret = rpc_connect(r, a.base, addr, async_msg, async_close, &a, &c);
	if (!ret)
		ret = rpc_send(c, &req);
	if (!ret)
		ret = rpc_send(c, &req);	/* queued before the connection is up */
	if (!ret) {
		event_base_loopexit(a.base, &tv);
		event_base_dispatch(a.base);
		rpc_conn_close(c);
	}
	CHECK("async-client", !ret && a.replies == 2 && !a.closed,
	      "rpc_connect + 2 rpc_send: %d replies (ret %d)", a.replies, ret);
	event_base_free(a.base);
}

/* ------------------------------------------------------------------ checks */

static void check_serves(struct rpc *r, const char *addr, const char *after)
{
	char why[256], name[64];
	int ret = ping(r, addr, "still", 1000, why, sizeof(why));

	snprintf(name, sizeof(name), "serves-after-%s", after);
	CHECK(name, !ret, "%s", why);
}

static void check_local(void)
{
	CHECK("op-name", !strcmp(rpc_op_name(CRJOB__OP__RESTORE), "RESTORE"), "%s",
	      rpc_op_name(CRJOB__OP__RESTORE));
}

/* the handshake: each HELLO once, from our munged, a HELLO and nothing else */
static void check_hello(struct rpc *good, struct rpc *other, const char *sock, int port,
			const char *addr)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	uint8_t *frame;
	size_t len;
	int ret;

	ret = rpc_hello_frame(other, &frame, &len);
	CHECK("other-key-rejected", !ret && raw_send(port, frame, len) == 1,
	      "a HELLO from a munged with another key: closed without a reply");
	if (!ret)
		free(frame);
	check_serves(good, addr, "other-key");

	ret = rpc_hello_frame(good, &frame, &len);
	if (!ret) {
		int first = raw_send(port, frame, len), second = raw_send(port, frame, len);

		CHECK("hello-replay-rejected", first == 0 && second == 1,
		      "first answered: %d, replay closed: %d", first == 0, second == 1);
		free(frame);
	} else {
		CHECK("hello-replay-rejected", 0, "rpc_hello_frame: %d", ret);
	}
	check_serves(good, addr, "replay");

	ret = cred_frame(sock, RPC_FRAME_HELLO, junk, sizeof(junk), &frame, &len);
	CHECK("garbage-hello-rejected", !ret && raw_send(port, frame, len) == 1,
	      "a valid credential around bytes that are not a HELLO: closed");
	if (!ret)
		free(frame);
	check_serves(good, addr, "garbage-hello");

	ret = cred_frame(sock, RPC_FRAME_WELCOME, junk, sizeof(junk), &frame, &len);
	CHECK("welcome-to-server-rejected", !ret && raw_send(port, frame, len) == 1,
	      "a WELCOME where a HELLO belongs: closed");
	if (!ret)
		free(frame);

	/* DATA without a handshake: whatever it holds, there is no key for it */
	ret = frame_of(RPC_FRAME_DATA, junk, sizeof(junk), &frame, &len);
	CHECK("data-before-hello-rejected", !ret && raw_send(port, frame, len) == 1,
	      "closed without a reply");
	if (!ret)
		free(frame);
	check_serves(good, addr, "data-before-hello");
}

/* frames inside an authenticated session */
static void check_session(struct rpc *good, const char *addr)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	uint8_t ping[256];
	size_t n = packed_ping(12, ping, sizeof(ping));
	int ret;

	ret = rpc_call_raw(good, addr, ping, n, 0, 5000);
	CHECK("raw-ping", ret == 0, "a packed PING in a DATA frame answered: %d", ret);

	ret = rpc_call_raw(good, addr, junk, sizeof(junk), 0, 5000);
	CHECK("garbage-msg-rejected", ret == -ECONNRESET,
	      "an authenticated frame that is not a Msg: closed (%d)", ret);
	check_serves(good, addr, "garbage");

	ret = rpc_call_raw(good, addr, ping, n, RPC_RAW_TAMPER, 5000);
	CHECK("tampered-rejected", ret == -ECONNRESET,
	      "a DATA frame with one bit flipped: closed (%d)", ret);
	check_serves(good, addr, "tampered");

	ret = rpc_call_raw(good, addr, ping, n, RPC_RAW_REPLAY, 5000);
	CHECK("data-replay-rejected", ret == -ECONNRESET,
	      "the same DATA frame twice: the first answered, the second closed (%d)", ret);
	check_serves(good, addr, "data-replay");
}

static void check_hostport(void)
{
	struct sockaddr_in sa;
	int ok = 1;

	ok &= !rpc_parse_hostport("127.0.0.1:7710", 0, &sa) && ntohs(sa.sin_port) == 7710 &&
	      sa.sin_addr.s_addr == htonl(INADDR_LOOPBACK);
	ok &= !rpc_parse_hostport("localhost", 7711, &sa) && ntohs(sa.sin_port) == 7711;
	ok &= !rpc_parse_hostport(":5", 0, &sa) && sa.sin_addr.s_addr == htonl(INADDR_ANY);
	ok &= rpc_parse_hostport("1.2.3.4:x", 0, &sa) == -EINVAL;
	ok &= rpc_parse_hostport("1.2.3.4:70000", 0, &sa) == -EINVAL;
	CHECK("parse-hostport", ok, "HOST:PORT forms");
}

int main(int argc, char **argv)
{
	char addr[64], why[256];
	struct rpc *good, *other;
	uint8_t big[4];
	pid_t srv;
	int port, ret;

	if (argc != 3) {
		fprintf(stderr, "usage: rpc_test GOOD_MUNGE_SOCKET OTHER_MUNGE_SOCKET\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (rpc_new(argv[1], 60, &good) || rpc_new(argv[2], 0, &other)) {
		fprintf(stderr, "rpc_new failed\n");
		return 1;
	}
	check_hostport();
	check_local();
	port = server_start(argv[1], &srv);
	if (port <= 0) {
		fprintf(stderr, "the echo server did not start\n");
		return 1;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

	ret = ping(good, addr, "events", 7, why, sizeof(why));
	CHECK("round-trip", !ret && events_seen == 2, "%s, %d events", why, events_seen);
	check_async(good, addr);
	check_hello(good, other, argv[1], port, addr);
	check_session(good, addr);

	/* a length over RPC_MAX_FRAME: closed before anything more is read */
	put_len(big, RPC_MAX_FRAME + 1);
	CHECK("oversize-rejected", raw_send(port, big, 4) == 1, "closed without a reply");
	check_serves(good, addr, "oversize");

	/* a server closing from its callback */
	ret = ping(good, addr, "close", 10, why, sizeof(why));
	CHECK("server-close", ret == -ECONNRESET, "%s", why);
	check_serves(good, addr, "close");

	/* nobody listening */
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	ret = ping(good, addr, "gone", 11, why, sizeof(why));
	CHECK("refused", ret == -ECONNREFUSED, "%s", why);

	rpc_free(good);
	rpc_free(other);
	return failed;
}
