/*
 * The multi-node test job of crjob (issue 5): one rank tree per node.
 *
 *   job --node I --addrs IP0,IP1,... --ranks R --rounds K --out DIR
 *       [--round-ms M] [--port BASE] [--msg-bytes B] [--ring-bytes B]
 *       [--shm-bytes B] [--shm anon|dev] [--io epoll|poll]
 *       [--fault corrupt|drop|dup --fault-round N]
 *
 * The root process of node I maps a shared region and forks R ranks.  Rank r
 * of node I is global rank g = I * R + r of P = N * R and listens on
 * IP_I:BASE+r.  Every pair of ranks has one TCP connection ("mesh", the lower
 * rank listens) and every rank has one more to its ring successor ("ring"),
 * across nodes and within them alike.
 *
 * Rounds 0..K-1: every rank sends a message to every other rank and a larger
 * one to its ring successor, and writes a block into its slot of the shared
 * region; then it receives one message from every rank and one from its ring
 * predecessor and reads the slots of its node's other ranks.  Each message
 * carries the sender, the receiver, a per-connection sequence number, the
 * round and a checksum of its payload; a message out of sequence, from the
 * wrong round or with a bad checksum, and any error or end of file, makes the
 * rank fail loudly ("FAIL ..." on stderr, exit 1) and its root kill the
 * others: the peers on other nodes then fail on the end of file.  Payloads
 * are generated from the sender's running hash of everything it received so
 * far, so the hash depends on every byte of the whole job and on nothing
 * else (not on timing).  Round K exchanges the final hashes; every rank
 * computes the same hash over them and every root writes it as
 * "RESULT <hex>" to DIR/result.nodeI.  Rank 0 of every node writes
 * "round N run" to DIR/progress.nodeI every round ("round K done" at the
 * end), in place with a fixed length.  The root also logs its RESULT on
 * stderr with its PID namespace.
 *
 * Round n starts no earlier than n * M ms after the start, so that a run
 * lasts long enough to be checkpointed (after a freeze the job catches up).  The job must survive being frozen for seconds and being
 * restored elsewhere with the same connections: every call that a ptrace
 * stop can interrupt retries on EINTR, and there are no timeouts, only a
 * warning on stderr when a round waits for more than 10 s.
 *
 * --fault makes rank 0 of node 0 damage one of its messages of round N (a
 * flipped payload byte, a message left out, a message sent twice), to show
 * that the checks do catch it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAGIC		0x4a6f6221u	/* "Job!" */
#define K_MESH		1
#define K_RING		2
#define K_FINAL		3
#define MAX_NODES	64
#define MAX_RANKS	64
#define MAX_P		256

struct msg_hdr {
	uint32_t magic;
	uint32_t from;
	uint32_t to;
	uint32_t kind;
	uint64_t seq;		/* per connection and direction, from 0 */
	uint64_t round;
	uint64_t len;		/* of the payload that follows */
	uint64_t sum;		/* hash of the header fields and the payload */
};

struct hello {
	uint32_t magic;
	uint32_t from;
	uint32_t kind;
};

struct conn {
	int fd;
	int peer;		/* global rank */
	int kind;		/* K_MESH, or K_RING for both ring directions */
	int ring_in;		/* ring connection from our predecessor */
	char *out;		/* bytes queued to send */
	size_t olen, ooff, ocap;
	char *in;		/* bytes received, not yet consumed */
	size_t ilen, icap;
	uint64_t tx_seq, rx_seq;
	int eof;
	uint32_t events;	/* registered with epoll */
};

/* One block per rank and round (modulo 3: see shm_get()). */
struct slot {
	uint64_t round;		/* round + 1 once data is complete; written last */
	uint64_t len;
	uint64_t seed;
	uint64_t sum;		/* hash64(seed, data, len) */
};

struct shm_hdr {
	int failed;		/* set by the root when a rank failed */
	uint64_t final[MAX_RANKS];
	uint64_t final_set[MAX_RANKS];
};

static struct {
	int node, nnodes, ranks, rounds, round_ms, port;
	size_t msg_bytes, ring_bytes, shm_bytes;
	int use_poll, shm_dev;
	int fault, fault_round;
	const char *out;
	struct in_addr addr[MAX_NODES];
} cfg = {
	.round_ms = 50, .port = 7400, .msg_bytes = 8192, .ring_bytes = 65536,
	.shm_bytes = 16384,
};

enum { F_NONE, F_CORRUPT, F_DROP, F_DUP };

/* this rank */
static int me, P, lrank;
static struct conn *conns;	/* P - 1 mesh, then ring out, then ring in */
static int nconns;
static struct conn **mesh_of;	/* by global rank */
static struct conn *ring_out, *ring_in;
static int epfd = -1;
static char *shm_base;
static struct shm_hdr *shm;
static int cur_round;
static int progress_fd = -1;

/* what the current round received */
static uint64_t got_mesh[MAX_P], got_ring;
static int have_mesh[MAX_P], have_ring, nhave;
static uint64_t final_of[MAX_P];

static void fail(const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAIL node %d rank %d (global %d) round %d: %s\n",
		cfg.node, lrank, me, cur_round, buf);
	exit(1);
}

static void fail_errno(const char *what)
{
	fail("%s: %s", what, strerror(errno));
}

/* ------------------------------------------------------------------ hashing */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t hash64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	uint64_t w;

	h = mix64(h ^ n);
	for (; n >= 8; n -= 8, c += 8) {
		memcpy(&w, c, 8);
		h = mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
	}
	w = 0;
	memcpy(&w, c, n);
	return mix64(h ^ w);
}

static uint64_t fold(uint64_t acc, uint64_t v)
{
	return mix64(acc ^ mix64(v + 0x632be59bd9b4e019ull));
}

/* n pseudo-random bytes, a function of seed only */
static void fill(unsigned char *buf, size_t n, uint64_t seed)
{
	uint64_t s = seed, w;

	for (size_t i = 0; i < n; i += 8) {
		s += 0x9e3779b97f4a7c15ull;
		w = mix64(s);
		memcpy(buf + i, &w, n - i < 8 ? n - i : 8);
	}
}

static uint64_t msg_sum(const struct msg_hdr *h, const void *payload)
{
	uint64_t s = fold(fold(fold(h->from, h->to), h->kind), fold(h->seq, h->round));

	return hash64(s, payload, h->len);
}

/* ------------------------------------------------------------------ small I/O */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

static void sleep_until(uint64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	/* a ptrace stop interrupts the sleep: sleep on to the same deadline */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail_errno("write");
		p += w;
		n -= w;
	}
}

/* blocking read of exactly n bytes (setup only: sockets are blocking then) */
static void read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail_errno("read");
		if (r == 0)
			fail("end of file during setup");
		p += r;
		n -= r;
	}
}

/*
 * Rewrite the progress file in place with a line of fixed length: a reader
 * never sees it empty, and its size never changes, so that a checkpoint of
 * the job stays restorable after the job went on (crd refuses to restore a
 * file that is open and not in append mode if its size changed).
 */
static void put_progress(int fd, int round, const char *state)
{
	char s[64];
	size_t n = snprintf(s, sizeof(s), "round %08d %-4s\n", round, state);
	ssize_t w;

	do
		w = pwrite(fd, s, n, 0);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)n)
		fail_errno("progress file");
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		fail("out of memory");
	return p;
}

/* ------------------------------------------------------------------ connections */

static int node_of(int g)
{
	return g / cfg.ranks;
}

static void set_sock_opts(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int connect_to(int g, int kind)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(cfg.port + g % cfg.ranks),
		.sin_addr = cfg.addr[node_of(g)],
	};
	struct hello h = { MAGIC, me, kind };
	uint64_t deadline = now_ms() + 60000;
	int fd;

	/* the peer may not listen yet: retry for a minute */
	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail_errno("socket");
		if (!connect(fd, (void *)&sa, sizeof(sa)))
			break;
		if (errno != ECONNREFUSED && errno != EINTR && errno != ETIMEDOUT &&
		    errno != ENETUNREACH && errno != EHOSTUNREACH)
			fail("connect to rank %d: %s", g, strerror(errno));
		close(fd);
		if (now_ms() > deadline)
			fail("rank %d does not listen", g);
		usleep(20000);
	}
	set_sock_opts(fd);
	write_all(fd, &h, sizeof(h));
	return fd;
}

static void conn_init(struct conn *c, int fd, int peer, int kind, int ring_in)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->peer = peer;
	c->kind = kind;
	c->ring_in = ring_in;
}

/* level-triggered: EPOLLOUT only while output waits, EPOLLIN until the end of file */
static uint32_t events_of(const struct conn *c)
{
	return (c->eof ? 0 : EPOLLIN) | (c->olen > c->ooff ? EPOLLOUT : 0);
}

static void ep_update(struct conn *c)
{
	struct epoll_event ev = { .events = events_of(c), .data.ptr = c };
	int op = EPOLL_CTL_MOD;

	if (cfg.use_poll || ev.events == c->events)
		return;
	/* a finished connection would report EPOLLHUP for ever: out with it */
	if (!ev.events)
		op = EPOLL_CTL_DEL;
	else if (!c->events)
		op = EPOLL_CTL_ADD;
	if (epoll_ctl(epfd, op, c->fd, &ev))
		fail_errno("epoll_ctl");
	c->events = ev.events;
}

static void setup(void)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(cfg.port + lrank),
		.sin_addr = cfg.addr[cfg.node],
	};
	int lfd, one = 1, next = (me + 1) % P, prev = (me + P - 1) % P, n = 0, i;

	nconns = P - 1 + 2;
	conns = calloc(nconns, sizeof(*conns));
	mesh_of = calloc(P, sizeof(*mesh_of));
	if (!conns || !mesh_of)
		fail("out of memory");

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		fail_errno("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (void *)&sa, sizeof(sa)) || listen(lfd, 2 * MAX_P))
		fail_errno("listen");

	/*
	 * Connects complete in the peers' backlogs, so every rank can first
	 * connect to all it must and then accept the rest without deadlock.
	 */
	for (i = 0; i < me; i++) {
		conn_init(&conns[n], connect_to(i, K_MESH), i, K_MESH, 0);
		mesh_of[i] = &conns[n++];
	}
	ring_out = &conns[P - 1];
	conn_init(ring_out, connect_to(next, K_RING), next, K_RING, 0);
	for (i = 0; i < P - me; i++) {
		struct hello h;
		int fd;

		do
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		while (fd < 0 && errno == EINTR);
		if (fd < 0)
			fail_errno("accept");
		read_all(fd, &h, sizeof(h));
		if (h.magic != MAGIC || h.from >= (unsigned)P)
			fail("bad hello");
		set_sock_opts(fd);
		if (h.kind == K_RING) {
			if ((int)h.from != prev || ring_in)
				fail("unexpected ring connection from %u", h.from);
			ring_in = &conns[P];
			conn_init(ring_in, fd, prev, K_RING, 1);
		} else {
			if ((int)h.from <= me || mesh_of[h.from])
				fail("unexpected mesh connection from %u", h.from);
			conn_init(&conns[n], fd, h.from, K_MESH, 0);
			mesh_of[h.from] = &conns[n++];
		}
	}
	if (!ring_in || n != P - 1)
		fail("setup incomplete");
	/*
	 * The listener stays open for the whole run, as an MPI library's does:
	 * it is part of what a checkpoint must carry.
	 */

	if (!cfg.use_poll) {
		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0)
			fail_errno("epoll_create1");
	}
	for (i = 0; i < nconns; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };

		if (fcntl(conns[i].fd, F_SETFL, O_NONBLOCK))
			fail_errno("fcntl");
		if (!cfg.use_poll && epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev))
			fail_errno("epoll_ctl");
		conns[i].events = EPOLLIN;
	}
}

static void queue(struct conn *c, const void *p, size_t n)
{
	if (c->olen + n > c->ocap) {
		if (c->ooff) {
			memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
			c->olen -= c->ooff;
			c->ooff = 0;
		}
		if (c->olen + n > c->ocap) {
			c->ocap = (c->olen + n) * 2;
			c->out = xrealloc(c->out, c->ocap);
		}
	}
	memcpy(c->out + c->olen, p, n);
	c->olen += n;
}

static void send_msg(struct conn *c, int kind, const void *payload, size_t len)
{
	struct msg_hdr h = {
		.magic = MAGIC, .from = me, .to = c->peer, .kind = kind,
		.seq = c->tx_seq++, .round = cur_round, .len = len,
	};
	int faulty = cfg.fault && me == 0 && cur_round == cfg.fault_round &&
		     c->peer == P - 1 && kind == K_MESH;

	h.sum = msg_sum(&h, payload);
	if (faulty && cfg.fault == F_DROP)
		return;
	queue(c, &h, sizeof(h));
	queue(c, payload, len);
	if (faulty && cfg.fault == F_CORRUPT)
		c->out[c->olen - len / 2 - 1] ^= 0x10;
	if (faulty && cfg.fault == F_DUP) {
		queue(c, &h, sizeof(h));
		queue(c, payload, len);
	}
}

static void flush(struct conn *c)
{
	while (c->olen > c->ooff) {
		ssize_t w = write(c->fd, c->out + c->ooff, c->olen - c->ooff);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0)
			fail("send to rank %d: %s", c->peer, strerror(errno));
		c->ooff += w;
	}
	if (c->ooff == c->olen)
		c->ooff = c->olen = 0;
	ep_update(c);
}

static void receive(struct conn *c)
{
	for (;;) {
		ssize_t r;

		if (c->icap - c->ilen < 65536) {
			c->icap = c->icap * 2 + 65536;
			c->in = xrealloc(c->in, c->icap);
		}
		r = read(c->fd, c->in + c->ilen, c->icap - c->ilen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r < 0)
			fail("receive from rank %d: %s", c->peer, strerror(errno));
		if (r == 0) {
			c->eof = 1;
			ep_update(c);
			return;
		}
		c->ilen += r;
	}
}

/* Take the complete messages of the current round from c's input. */
static void parse(struct conn *c)
{
	size_t off = 0;

	while (c->ilen - off >= sizeof(struct msg_hdr)) {
		struct msg_hdr h;
		const char *payload = c->in + off + sizeof(h);
		const char *what = c->ring_in ? "ring" : c->kind == K_RING ? "ring-out" : "mesh";

		memcpy(&h, c->in + off, sizeof(h));
		if (h.magic != MAGIC)
			fail("%s connection from rank %d: bad magic %#x at seq %llu", what,
			     c->peer, h.magic, (unsigned long long)c->rx_seq);
		if ((int)h.from != c->peer || (int)h.to != me)
			fail("%s connection from rank %d: message from %u to %u", what, c->peer,
			     h.from, h.to);
		if (h.len > (1u << 26))
			fail("message from rank %d: length %llu", c->peer,
			     (unsigned long long)h.len);
		if (c->ilen - off < sizeof(h) + h.len)
			break;
		/* a peer is at most one round ahead: keep its next round */
		if (h.round == (uint64_t)cur_round + 1 && h.seq == c->rx_seq)
			break;
		if (h.seq != c->rx_seq)
			fail("message from rank %d: seq %llu, expected %llu (%s)", c->peer,
			     (unsigned long long)h.seq, (unsigned long long)c->rx_seq,
			     h.seq < c->rx_seq ? "duplicate" : "lost");
		if (h.round != (uint64_t)cur_round)
			fail("message from rank %d: round %llu", c->peer,
			     (unsigned long long)h.round);
		if (msg_sum(&h, payload) != h.sum)
			fail("message from rank %d seq %llu: checksum mismatch (corrupted)",
			     c->peer, (unsigned long long)h.seq);
		c->rx_seq++;
		if (c->ring_in) {
			if (h.kind != K_RING || have_ring)
				fail("unexpected ring message kind %u", h.kind);
			got_ring = h.sum;
			have_ring = 1;
		} else if (c->kind == K_MESH) {
			if (h.kind != (cur_round == cfg.rounds ? K_FINAL : K_MESH) ||
			    have_mesh[c->peer])
				fail("unexpected message kind %u from rank %d", h.kind, c->peer);
			if (h.kind == K_FINAL) {
				if (h.len != 8)
					fail("final message of length %llu",
					     (unsigned long long)h.len);
				memcpy(&final_of[c->peer], payload, 8);
			}
			got_mesh[c->peer] = h.sum;
			have_mesh[c->peer] = 1;
		} else {
			fail("data on the ring connection to rank %d", c->peer);
		}
		nhave++;
		off += sizeof(h) + h.len;
	}
	if (off) {
		memmove(c->in, c->in + off, c->ilen - off);
		c->ilen -= off;
	}
}

/* Wait for events on the connections; handles what arrived. */
static void wait_io(int timeout)
{
	int i, n;

	if (cfg.use_poll) {
		struct pollfd pfd[MAX_P + 2];

		for (i = 0; i < nconns; i++) {
			pfd[i].events = events_of(&conns[i]);	/* EPOLLIN/OUT == POLLIN/OUT */
			/* as with epoll: a finished connection is left out */
			pfd[i].fd = pfd[i].events ? conns[i].fd : -1;
			pfd[i].revents = 0;
		}
		n = poll(pfd, nconns, timeout);
		if (n < 0 && errno == EINTR)
			return;
		if (n < 0)
			fail_errno("poll");
		for (i = 0; i < nconns; i++) {
			if (pfd[i].revents & POLLOUT)
				flush(&conns[i]);
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				receive(&conns[i]);
		}
	} else {
		struct epoll_event ev[MAX_P + 2];

		n = epoll_wait(epfd, ev, MAX_P + 2, timeout);
		if (n < 0 && errno == EINTR)
			return;
		if (n < 0)
			fail_errno("epoll_wait");
		for (i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (ev[i].events & EPOLLOUT)
				flush(c);
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				receive(c);
		}
	}
}

/*
 * Whether c is still to bring something this round.  A peer closes its side
 * once it has all of the final round: only then may any connection end.
 */
static int owes(const struct conn *c)
{
	if (cur_round < cfg.rounds)
		return c->kind == K_MESH ? !have_mesh[c->peer] : 1;
	return c->kind == K_MESH && !have_mesh[c->peer];
}

/* Run I/O until the current round has every message it waits for. */
static void pump(int want)
{
	uint64_t since = now_ms(), warned = since;
	int i;

	for (i = 0; i < nconns; i++)
		flush(&conns[i]);
	for (;;) {
		for (i = 0; i < nconns; i++) {
			parse(&conns[i]);
			if (conns[i].eof && owes(&conns[i]))
				fail("rank %d closed its connection (end of file)", conns[i].peer);
		}
		if (nhave >= want)
			return;
		wait_io(1000);
		if (now_ms() - warned > 10000) {
			warned = now_ms();
			fprintf(stderr, "node %d rank %d: round %d waits for %llu s (%d of %d)\n",
				cfg.node, lrank, cur_round,
				(unsigned long long)(warned - since) / 1000, nhave, want);
		}
	}
}

/* ------------------------------------------------------------------ shared memory */

static size_t slot_size(void)
{
	return (sizeof(struct slot) + cfg.shm_bytes + 63) & ~(size_t)63;
}

static size_t shm_size(void)
{
	return sizeof(struct shm_hdr) + 3 * cfg.ranks * slot_size();
}

static struct slot *slot_of(int r, int round)
{
	return (struct slot *)(shm_base + sizeof(struct shm_hdr) +
			       ((round % 3) * cfg.ranks + r) * slot_size());
}

static void shm_put(uint64_t acc)
{
	struct slot *s = slot_of(lrank, cur_round);
	uint64_t seed = fold(fold(acc, me), cur_round);

	s->len = 64 + mix64(seed) % (cfg.shm_bytes - 63);
	s->seed = seed;
	fill((unsigned char *)(s + 1), s->len, seed);
	s->sum = hash64(seed, s + 1, s->len);
	__atomic_store_n(&s->round, cur_round + 1, __ATOMIC_RELEASE);
}

/*
 * A rank can be at most one round ahead of any other (it needs everybody's
 * messages of the round before), and reads the slots of round N before it
 * sends anything of round N + 1, so three generations of slots suffice.
 */
static uint64_t shm_get(int r)
{
	struct slot *s = slot_of(r, cur_round);
	uint64_t since = now_ms(), v;

	for (;;) {
		v = __atomic_load_n(&s->round, __ATOMIC_ACQUIRE);
		if (v == (uint64_t)cur_round + 1)
			break;
		if (v > (uint64_t)cur_round + 1)
			fail("shared slot of local rank %d is at round %llu", r,
			     (unsigned long long)v - 1);
		if (__atomic_load_n(&shm->failed, __ATOMIC_RELAXED))
			fail("another local rank failed");
		if (now_ms() - since > 10000) {
			fprintf(stderr, "node %d rank %d: round %d waits for local rank %d\n",
				cfg.node, lrank, cur_round, r);
			since = now_ms();
		}
		usleep(200);	/* EINTR or not, look again */
	}
	if (s->len > cfg.shm_bytes)
		fail("shared slot of local rank %d: length %llu", r, (unsigned long long)s->len);
	if (hash64(s->seed, s + 1, s->len) != s->sum)
		fail("shared slot of local rank %d: checksum mismatch (corrupted)", r);
	return s->sum;
}

/* ------------------------------------------------------------------ a rank */

static int rank_main(void)
{
	uint64_t acc = fold(0x6a6f62, me), start = now_ms(), global;
	unsigned char *buf = malloc(cfg.ring_bytes + cfg.msg_bytes + 64);
	int i, r;

	if (!buf)
		fail("out of memory");
	if (lrank == 0) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/progress.node%d", cfg.out, cfg.node);
		progress_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (progress_fd < 0)
			fail_errno(path);
	}
	setup();

	for (cur_round = 0; cur_round <= cfg.rounds; cur_round++) {
		int want = P - 1 + (cur_round < cfg.rounds);

		sleep_until(start + (uint64_t)cur_round * cfg.round_ms);
		memset(have_mesh, 0, sizeof(have_mesh));
		have_ring = 0;
		nhave = 0;
		if (cur_round < cfg.rounds) {
			shm_put(acc);
			for (i = 0; i < P; i++) {
				uint64_t seed = fold(fold(fold(acc, me), i), cur_round);
				size_t len = 1 + mix64(seed) % cfg.msg_bytes;

				if (i == me)
					continue;
				fill(buf, len, seed);
				send_msg(mesh_of[i], K_MESH, buf, len);
			}
			{
				uint64_t seed = fold(fold(acc, ~(uint64_t)me), cur_round);
				size_t len = cfg.ring_bytes / 2 + mix64(seed) % (cfg.ring_bytes / 2 + 1);

				fill(buf, len, seed);
				send_msg(ring_out, K_RING, buf, len);
			}
		} else {
			for (i = 0; i < P; i++)
				if (i != me)
					send_msg(mesh_of[i], K_FINAL, &acc, 8);
		}
		pump(want);

		if (cur_round == cfg.rounds)
			break;
		/* fold in a fixed order, whatever the order of arrival */
		acc = fold(acc, cur_round);
		for (i = 0; i < P; i++)
			if (i != me)
				acc = fold(acc, got_mesh[i]);
		acc = fold(acc, got_ring);
		for (r = 0; r < cfg.ranks; r++)
			if (r != lrank)
				acc = fold(acc, shm_get(r));
		if (progress_fd >= 0)
			put_progress(progress_fd, cur_round + 1, "run");
	}

	/* every rank computes the same hash over everybody's final hash */
	final_of[me] = acc;
	global = 0x726573756c74ull;
	for (i = 0; i < P; i++)
		global = fold(global, final_of[i]);
	shm->final[lrank] = global;
	__atomic_store_n(&shm->final_set[lrank], 1, __ATOMIC_RELEASE);

	/* orderly close: send everything, then read every peer to its end */
	for (;;) {
		int pending = 0;

		for (i = 0; i < nconns; i++) {
			flush(&conns[i]);
			pending |= conns[i].olen > conns[i].ooff;
		}
		if (!pending)
			break;
		wait_io(1000);
	}
	for (i = 0; i < nconns; i++)
		while (shutdown(conns[i].fd, SHUT_WR) && errno == EINTR)
			;
	for (;;) {
		int open_ = 0;

		for (i = 0; i < nconns; i++) {
			if (conns[i].ilen)
				fail("data from rank %d after the last round", conns[i].peer);
			open_ += !conns[i].eof;
		}
		if (!open_)
			break;
		wait_io(1000);
	}
	if (progress_fd >= 0)
		put_progress(progress_fd, cfg.rounds, "done");
	return 0;
}

/* ------------------------------------------------------------------ the root */

static pid_t children[MAX_RANKS];

static void usage(void)
{
	fprintf(stderr,
		"usage: job --node I --addrs IP0,IP1,... --ranks R --rounds K --out DIR\n"
		"           [--round-ms M] [--port BASE] [--msg-bytes B] [--ring-bytes B]\n"
		"           [--shm-bytes B] [--shm anon|dev] [--io epoll|poll]\n"
		"           [--fault corrupt|drop|dup --fault-round N]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "node", required_argument, NULL, 'n' },
		{ "addrs", required_argument, NULL, 'a' },
		{ "ranks", required_argument, NULL, 'r' },
		{ "rounds", required_argument, NULL, 'k' },
		{ "out", required_argument, NULL, 'o' },
		{ "round-ms", required_argument, NULL, 'm' },
		{ "port", required_argument, NULL, 'p' },
		{ "msg-bytes", required_argument, NULL, 'b' },
		{ "ring-bytes", required_argument, NULL, 'B' },
		{ "shm-bytes", required_argument, NULL, 's' },
		{ "shm", required_argument, NULL, 'S' },
		{ "io", required_argument, NULL, 'i' },
		{ "fault", required_argument, NULL, 'f' },
		{ "fault-round", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	char *a, *tok, *save;
	int c;

	cfg.node = -1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': cfg.node = atoi(optarg); break;
		case 'r': cfg.ranks = atoi(optarg); break;
		case 'k': cfg.rounds = atoi(optarg); break;
		case 'o': cfg.out = optarg; break;
		case 'm': cfg.round_ms = atoi(optarg); break;
		case 'p': cfg.port = atoi(optarg); break;
		case 'b': cfg.msg_bytes = strtoul(optarg, NULL, 0); break;
		case 'B': cfg.ring_bytes = strtoul(optarg, NULL, 0); break;
		case 's': cfg.shm_bytes = strtoul(optarg, NULL, 0); break;
		case 'S': cfg.shm_dev = !strcmp(optarg, "dev"); break;
		case 'i': cfg.use_poll = !strcmp(optarg, "poll"); break;
		case 'F': cfg.fault_round = atoi(optarg); break;
		case 'f':
			cfg.fault = !strcmp(optarg, "corrupt") ? F_CORRUPT :
				    !strcmp(optarg, "drop") ? F_DROP :
				    !strcmp(optarg, "dup") ? F_DUP : -1;
			if (cfg.fault < 0)
				usage();
			break;
		case 'a':
			a = strdup(optarg);
			for (tok = strtok_r(a, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (cfg.nnodes == MAX_NODES ||
				    inet_pton(AF_INET, tok, &cfg.addr[cfg.nnodes]) != 1) {
					fprintf(stderr, "job: bad address %s\n", tok);
					exit(2);
				}
				cfg.nnodes++;
			}
			free(a);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || cfg.node < 0 || cfg.node >= cfg.nnodes || cfg.ranks < 1 ||
	    cfg.ranks > MAX_RANKS || cfg.rounds < 1 || !cfg.out || cfg.msg_bytes < 1 ||
	    cfg.ring_bytes < 2 || cfg.shm_bytes < 64 || cfg.round_ms < 0 ||
	    cfg.nnodes * cfg.ranks < 2 || cfg.nnodes * cfg.ranks > MAX_P)
		usage();
}

static void map_shm(char *name, size_t namelen)
{
	int fd;

	/* --shm dev: a /dev/shm file, as MPI libraries use; else anonymous */
	if (cfg.shm_dev) {
		snprintf(name, namelen, "/dev/shm/crjob-job-%d-node%d", getpid(), cfg.node);
		fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, shm_size())) {
			perror(name);
			exit(1);
		}
		shm_base = mmap(NULL, shm_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	} else {
		shm_base = mmap(NULL, shm_size(), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	}
	if (shm_base == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	shm = (struct shm_hdr *)shm_base;
}

static void write_result(const char *s)
{
	char path[4096], tmp[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/result.node%d", cfg.out, cfg.node);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(tmp);
		exit(1);
	}
	write_all(fd, s, strlen(s));
	close(fd);
	if (rename(tmp, path)) {
		perror(path);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	char shm_name[256] = "", line[128];
	int r, left, bad = 0, st;
	uint64_t result;

	parse_args(argc, argv);
	P = cfg.nnodes * cfg.ranks;
	signal(SIGPIPE, SIG_IGN);	/* a peer gone shows as EPIPE, reported */
	setvbuf(stderr, NULL, _IOLBF, 0);
	map_shm(shm_name, sizeof(shm_name));

	for (r = 0; r < cfg.ranks; r++) {
		children[r] = fork();
		if (children[r] < 0) {
			perror("fork");
			exit(1);
		}
		if (children[r] == 0) {
			lrank = r;
			me = cfg.node * cfg.ranks + r;
			exit(rank_main());
		}
	}

	/* the root only waits: a failed rank takes its node's others with it */
	for (left = cfg.ranks; left; ) {
		pid_t pid = waitpid(-1, &st, 0);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0) {
			perror("waitpid");
			exit(1);
		}
		for (r = 0; r < cfg.ranks; r++)
			if (children[r] == pid)
				break;
		if (r == cfg.ranks)
			continue;
		children[r] = 0;
		left--;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			continue;
		fprintf(stderr, "FAIL node %d: rank %d %s %d\n", cfg.node, r,
			WIFEXITED(st) ? "exited" : "killed by signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		if (!bad) {
			__atomic_store_n(&shm->failed, 1, __ATOMIC_RELAXED);
			for (int i = 0; i < cfg.ranks; i++)
				if (children[i])
					kill(children[i], SIGKILL);
		}
		bad = 1;
	}
	if (shm_name[0])
		unlink(shm_name);
	if (bad)
		return 1;
	result = shm->final[0];
	for (r = 0; r < cfg.ranks; r++)
		if (!__atomic_load_n(&shm->final_set[r], __ATOMIC_ACQUIRE) ||
		    shm->final[r] != result) {
			fprintf(stderr, "FAIL node %d: ranks disagree on the result\n", cfg.node);
			return 1;
		}
	snprintf(line, sizeof(line), "RESULT %016llx\n", (unsigned long long)result);
	write_result(line);
	/*
	 * Also in the log (append-only, so it may grow after a checkpoint),
	 * with the PID namespace: a copy restored with --pidns while the
	 * original runs has the same PIDs and writes the same files.
	 */
	{
		char ns[64] = "?";
		ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);

		ns[n > 0 ? n : 1] = 0;
		fprintf(stderr, "node %d root %d %s: %s", cfg.node, getpid(), ns, line);
	}
	return 0;
}
