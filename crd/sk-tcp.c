/*
 * TCP sockets.  A listening socket is bound and listens again.  An
 * established connection is frozen with TCP_REPAIR: every connection of the
 * tree enters repair mode before any is read, so none sends or acknowledges
 * while the others are dumped; then its sequence numbers, queues, options
 * and window are read.  Restore rebuilds the socket in repair mode (no
 * handshake), refills its queues and leaves repair mode once every socket
 * exists; data that was never sent is sent then.
 *
 * Repair mode alone still lets the kernel acknowledge what arrives; the
 * network lock (netlock.c) drops the connections' packets around it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sk-inet.h"
#include "util.h"
#include "sk-tcp.h"

#define TCPF_ESTABLISHED	1
#define TCPF_LISTEN		10
#define OPT_TIMESTAMPS		1
#define OPT_SACK		2
#define OPT_WSCALE		4

struct tcp_sk {
	int sk;			/* our copy of the socket */
	pid_t pid;
	int fd;
	bool repair;
	Crd__TcpSkEntry *e;
};

struct tcp_table {
	struct tcp_sk *sks;
	size_t n, cap;
};

struct tcp_table *tcp_table_new(void)
{
	return calloc(1, sizeof(struct tcp_table));
}

void tcp_table_free(struct tcp_table *t, bool resume)
{
	int off = TCP_REPAIR_OFF;
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++) {
		if (t->sks[i].repair && resume &&
		    setsockopt(t->sks[i].sk, SOL_TCP, TCP_REPAIR, &off, sizeof(off)))
			pr_perror("pid %d fd %d: can't take the connection out of repair",
				  t->sks[i].pid, t->sks[i].fd);
		close(t->sks[i].sk);
	}
	free(t->sks);
	free(t);
}

static const char *tcp_state_name(unsigned int st)
{
	static const char *const names[] = {
		"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
	};

	return st < ARRAY_SIZE(names) ? names[st] : "?";
}

int tcp_probe(pid_t pid, int fd)
{
	return inet_probe(pid, fd, SOCK_STREAM, IPPROTO_TCP);
}

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK		72	/* Linux 5.14 */
#endif
#define SK_SNDBUF_LOCK		1
#define SK_RCVBUF_LOCK		2

/* an int socket option into *out: whether it could be read (the image's has_ field) */
static protobuf_c_boolean opt_u32(int sk, int level, int opt, uint32_t *out)
{
	socklen_t l = sizeof(int);
	int v;

	if (getsockopt(sk, level, opt, &v, &l))
		return false;
	*out = v;
	return true;
}

static protobuf_c_boolean opt_bool(int sk, int level, int opt, protobuf_c_boolean *out)
{
	uint32_t v;

	if (!opt_u32(sk, level, opt, &v))
		return false;
	*out = v != 0;
	return true;
}

int tcp_collect(struct tcp_table *t, struct arena *a, pid_t pid, int fd, uint64_t ino,
		Crd__TcpSkEntry *e)
{
	struct sockaddr_storage ss;
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	int sk, ret;

	sk = task_fd_dup(pid, fd);
	if (sk < 0) {
		pr_err("pid %d fd %d: can't get the socket: %s\n", pid, fd, strerror(-sk));
		return sk;
	}
	e->id = ino;
	if (getsockopt(sk, SOL_TCP, TCP_INFO, &ti, &l)) {
		ret = -errno;
		goto err;
	}
	e->state = ti.tcpi_state;
	if (e->state != TCPF_ESTABLISHED && e->state != TCPF_LISTEN) {
		pr_err("pid %d fd %d: TCP socket in state %u (%s) is not supported: %s\n", pid, fd,
		       e->state, tcp_state_name(e->state),
		       e->state >= 4 && e->state <= 9 ? "the connection is closing or its peer is gone"
						      : "the connection is not established");
		ret = -ENOTSUP;
		goto err;
	}
	l = sizeof(ss);
	if (getsockname(sk, (struct sockaddr *)&ss, &l)) {
		ret = -errno;
		goto err;
	}
	e->family = ss.ss_family;
	ret = inet_save_addr(a, &e->src_addr, &e->src_port, &ss);
	if (ret)
		goto err;
	e->has_reuseaddr = opt_bool(sk, SOL_SOCKET, SO_REUSEADDR, &e->reuseaddr);
	e->has_nodelay = opt_bool(sk, SOL_TCP, TCP_NODELAY, &e->nodelay);
	e->has_keepalive = opt_bool(sk, SOL_SOCKET, SO_KEEPALIVE, &e->keepalive);
	/* the buffers' sizes, and which of them the program fixed (the kernel sizes the others) */
	e->has_sndbuf = opt_u32(sk, SOL_SOCKET, SO_SNDBUF, &e->sndbuf);
	e->has_rcvbuf = opt_u32(sk, SOL_SOCKET, SO_RCVBUF, &e->rcvbuf);
	e->has_buf_lock = opt_u32(sk, SOL_SOCKET, SO_BUF_LOCK, &e->buf_lock);
	if (e->family == AF_INET6)
		e->has_v6only = opt_bool(sk, IPPROTO_IPV6, IPV6_V6ONLY, &e->v6only);
	if (e->state == TCPF_LISTEN) {
		close(sk);
		return 0;
	}
	l = sizeof(ss);
	if (getpeername(sk, (struct sockaddr *)&ss, &l)) {
		ret = -errno;
		goto err;
	}
	e->has_dst_port = true;
	ret = inet_save_addr(a, &e->dst_addr, &e->dst_port, &ss);
	if (ret)
		goto err;
	e->has_dst_addr = true;
	if (t->n == t->cap) {
		struct tcp_sk *n = realloc(t->sks, (t->cap * 2 + 8) * sizeof(*n));

		if (!n) {
			ret = -ENOMEM;
			goto err;
		}
		t->sks = n;
		t->cap = t->cap * 2 + 8;
	}
	t->sks[t->n++] = (struct tcp_sk){ .sk = sk, .pid = pid, .fd = fd, .e = e };
	return 0;
err:
	if (ret != -ENOTSUP)
		pr_err("pid %d fd %d: can't inspect the TCP socket: %s\n", pid, fd, strerror(-ret));
	close(sk);
	return ret;
}

static int peek_queue(struct arena *a, int sk, int queue, int ioc, ProtobufCBinaryData *b)
{
	int len;

	if (setsockopt(sk, SOL_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) ||
	    ioctl(sk, ioc, &len))
		return -errno;
	b->len = 0;
	if (!len)
		return 0;
	b->data = arena_alloc(a, len);
	if (!b->data)
		return -ENOMEM;
	if (recv(sk, b->data, len, MSG_PEEK | MSG_DONTWAIT) != len)
		return -EIO;
	b->len = len;
	return 0;
}

static int get_u32(int sk, int opt, uint32_t *v)
{
	socklen_t l = sizeof(*v);

	return getsockopt(sk, SOL_TCP, opt, v, &l) ? -errno : 0;
}

static int dump_repaired(struct arena *a, struct tcp_sk *s)
{
	Crd__TcpSkEntry *e = s->e;
	struct tcp_repair_window w;
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	int q, unsent, ret;

	ret = peek_queue(a, s->sk, TCP_SEND_QUEUE, SIOCOUTQ, &e->send_queue);
	if (!ret)
		ret = get_u32(s->sk, TCP_QUEUE_SEQ, &e->snd_seq);
	if (!ret)
		ret = peek_queue(a, s->sk, TCP_RECV_QUEUE, SIOCINQ, &e->recv_queue);
	if (!ret)
		ret = get_u32(s->sk, TCP_QUEUE_SEQ, &e->rcv_seq);
	if (ret)
		return ret;
	q = TCP_NO_QUEUE;
	setsockopt(s->sk, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q));
	if (ioctl(s->sk, SIOCOUTQNSD, &unsent) ||
	    getsockopt(s->sk, SOL_TCP, TCP_INFO, &ti, &l) ||
	    get_u32(s->sk, TCP_MAXSEG, &e->mss) || get_u32(s->sk, TCP_TIMESTAMP, &e->timestamp))
		return -errno;
	l = sizeof(w);
	if (getsockopt(s->sk, SOL_TCP, TCP_REPAIR_WINDOW, &w, &l))
		return -errno;
	e->has_send_queue = e->has_recv_queue = e->has_snd_seq = e->has_rcv_seq = true;
	e->has_unsent = e->has_mss = e->has_timestamp = e->has_options = true;
	e->has_snd_wscale = e->has_rcv_wscale = true;
	e->unsent = unsent;
	e->options = ti.tcpi_options;
	e->snd_wscale = ti.tcpi_snd_wscale;
	e->rcv_wscale = ti.tcpi_rcv_wscale;
	e->has_snd_wl1 = e->has_snd_wnd = e->has_max_window = e->has_rcv_wnd = true;
	e->has_rcv_wup = true;
	e->snd_wl1 = w.snd_wl1;
	e->snd_wnd = w.snd_wnd;
	e->max_window = w.max_window;
	e->rcv_wnd = w.rcv_wnd;
	e->rcv_wup = w.rcv_wup;
	return 0;
}

int tcp_dump_all(struct tcp_table *t, struct arena *a)
{
	int on = TCP_REPAIR_ON, ret;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (setsockopt(t->sks[i].sk, SOL_TCP, TCP_REPAIR, &on, sizeof(on))) {
			ret = -errno;
			pr_perror("pid %d fd %d: can't put the connection in repair mode",
				  t->sks[i].pid, t->sks[i].fd);
			return ret;
		}
		t->sks[i].repair = true;
	}
	for (i = 0; i < t->n; i++) {
		ret = dump_repaired(a, &t->sks[i]);
		if (ret) {
			pr_err("pid %d fd %d: can't read the TCP connection: %s\n", t->sks[i].pid,
			       t->sks[i].fd, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ restore */

static int set_int(int sk, int level, int opt, int v)
{
	return setsockopt(sk, level, opt, &v, sizeof(v)) ? -errno : 0;
}

/* SO_*BUFFORCE to at least want bytes (getsockopt reads twice what was set) */
static int force_buf(int sk, int opt, bool has, uint32_t dumped, uint32_t want)
{
	if (has && dumped / 2 > want)
		want = dumped / 2;
	return set_int(sk, SOL_SOCKET, opt, want < INT_MAX ? want : INT_MAX);
}

/*
 * A connection's buffers hold its queues and are at least as large as they
 * had grown; then only those the program had set stay fixed.  Forcing a size
 * fixes it (SOCK_*BUF_LOCK), and a fixed buffer never grows again: restored
 * ranks sent their MiB messages through a 128 KiB window, several times
 * slower than before the checkpoint.  A listener passes its buffers to the
 * connections it accepts: only fixed ones are set there.
 */
static int restore_bufs(const Crd__TcpSkEntry *e, int sk)
{
	uint32_t lock = e->has_buf_lock ? e->buf_lock : 0;
	int ret = 0;

	if (e->state != TCPF_LISTEN) {
		ret = force_buf(sk, SO_SNDBUFFORCE, e->has_sndbuf, e->sndbuf,
				e->send_queue.len + (64 << 10));
		if (!ret)
			ret = force_buf(sk, SO_RCVBUFFORCE, e->has_rcvbuf, e->rcvbuf,
					e->recv_queue.len + (64 << 10));
	} else {
		if (lock & SK_SNDBUF_LOCK)
			ret = force_buf(sk, SO_SNDBUFFORCE, e->has_sndbuf, e->sndbuf, 0);
		if (!ret && (lock & SK_RCVBUF_LOCK))
			ret = force_buf(sk, SO_RCVBUFFORCE, e->has_rcvbuf, e->rcvbuf, 0);
		if (!lock)
			return ret;
	}
	if (ret)
		return ret;
	/* before 5.14 the kernel has no SO_BUF_LOCK: the sizes stay fixed, slower but right */
	if (set_int(sk, SOL_SOCKET, SO_BUF_LOCK, lock) && errno != ENOPROTOOPT)
		return -errno;
	return 0;
}

static int new_socket(const Crd__TcpSkEntry *e)
{
	int sk = socket(e->family, SOCK_STREAM, 0);

	if (sk < 0)
		return -errno;
	/* a listener's options go to the connections it accepts after the restore */
	if (set_int(sk, SOL_SOCKET, SO_REUSEADDR, 1) ||
	    (e->has_v6only && e->family == AF_INET6 &&
	     set_int(sk, IPPROTO_IPV6, IPV6_V6ONLY, e->v6only)) ||
	    (e->has_nodelay && set_int(sk, SOL_TCP, TCP_NODELAY, e->nodelay)) ||
	    (e->has_keepalive && set_int(sk, SOL_SOCKET, SO_KEEPALIVE, e->keepalive))) {
		close(sk);
		return -errno;
	}
	return sk;
}

#define FREE_PORT_MAX	256	/* remains of connections freed per port */

struct diag_req {
	struct nlmsghdr nlh;
	struct inet_diag_req_v2 r;
};

static int diag_send(int nl, int type, int flags, int family, const struct inet_diag_sockid *id)
{
	struct diag_req q = {
		.nlh = { .nlmsg_len = sizeof(q), .nlmsg_type = type, .nlmsg_flags = flags },
		.r = { .sdiag_family = family, .sdiag_protocol = IPPROTO_TCP,
		       .idiag_states = ~(1U << TCP_LISTEN) },
	};

	if (id)
		q.r.id = *id;
	return send(nl, &q, sizeof(q), 0) == sizeof(q) ? 0 : -errno;
}

/* TCP sockets of this network namespace on local port that no process holds */
static int orphans_on(int nl, int family, uint16_t port, struct inet_diag_sockid *ids, int max)
{
	char buf[16384];
	struct nlmsghdr *h;
	int n = 0, len;

	if (diag_send(nl, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, NULL))
		return -errno;
	while ((len = recv(nl, buf, sizeof(buf), 0)) > 0) {
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				return n;
			if (h->nlmsg_type == NLMSG_ERROR)
				return -EIO;
			if (ntohs(m->id.idiag_sport) == port && !m->idiag_inode && n < max)
				ids[n++] = m->id;
		}
	}
	return -EIO;
}

/*
 * A port held only by remains of killed connections (FIN_WAIT orphans,
 * TIME_WAIT: sockets no process has) when a tree comes back to a node where
 * it, or the trees it talked to, were dumped and killed: nothing can use
 * them any more, so they are aborted (SOCK_DESTROY).  A socket that a
 * process holds is never touched.  Returns how many were freed.
 */
static int free_port(int family, uint16_t port)
{
	struct inet_diag_sockid ids[FREE_PORT_MAX];
	int nl, n, i, freed = 0;
	char ack[512];

	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return 0;
	n = orphans_on(nl, family, port, ids, FREE_PORT_MAX);
	for (i = 0; i < n; i++) {
		if (diag_send(nl, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family, &ids[i]) ||
		    recv(nl, ack, sizeof(ack), 0) <= 0)
			break;
		if (!((struct nlmsgerr *)NLMSG_DATA((struct nlmsghdr *)ack))->error)
			freed++;
	}
	close(nl);
	if (freed)
		pr_info("TCP port %u: freed %d remains of killed connections\n", port, freed);
	return freed;
}

static int bind_listen(int sk, const struct sockaddr_storage *ss, socklen_t l)
{
	return bind(sk, (const struct sockaddr *)ss, l) || listen(sk, SOMAXCONN) ? -errno : 0;
}

static int restore_listen(const Crd__TcpSkEntry *e)
{
	struct sockaddr_storage ss;
	socklen_t l = inet_make_addr(&ss, e->family, &e->src_addr, e->src_port);
	int sk = new_socket(e), ret;

	if (sk < 0)
		return sk;
	ret = bind_listen(sk, &ss, l);
	if (ret == -EADDRINUSE && free_port(e->family, e->src_port)) {
		close(sk);
		sk = new_socket(e);
		if (sk < 0)
			return sk;
		ret = bind_listen(sk, &ss, l);
	}
	if (!ret && set_int(sk, SOL_SOCKET, SO_REUSEADDR, e->has_reuseaddr && e->reuseaddr))
		ret = -errno;
	if (!ret)
		ret = restore_bufs(e, sk);
	if (ret) {
		errno = -ret;
		pr_perror("TCP socket %lu: can't listen on port %u again", e->id, e->src_port);
		close(sk);
		return ret;
	}
	return sk;
}

static int fill_queue(int sk, int queue, const uint8_t *data, size_t len)
{
	size_t done = 0;

	if (set_int(sk, SOL_TCP, TCP_REPAIR_QUEUE, queue))
		return -errno;
	while (done < len) {
		ssize_t n = send(sk, data + done, len - done, 0);

		if (n < 0)
			return -errno;
		done += n;
	}
	return 0;
}

static int restore_repaired(const Crd__TcpSkEntry *e, int sk)
{
	struct sockaddr_storage src, dst;
	socklen_t sl = inet_make_addr(&src, e->family, &e->src_addr, e->src_port);
	socklen_t dl = inet_make_addr(&dst, e->family, &e->dst_addr, e->dst_port);
	struct tcp_repair_opt opts[4];
	struct tcp_repair_window w = {
		.snd_wl1 = e->snd_wl1, .snd_wnd = e->snd_wnd, .max_window = e->max_window,
		.rcv_wnd = e->rcv_wnd, .rcv_wup = e->rcv_wup,
	};
	size_t sent = e->send_queue.len - e->unsent;
	int n = 0;

	if (set_int(sk, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) ||
	    set_int(sk, SOL_TCP, TCP_QUEUE_SEQ, e->snd_seq - e->send_queue.len) ||
	    set_int(sk, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) ||
	    set_int(sk, SOL_TCP, TCP_QUEUE_SEQ, e->rcv_seq - e->recv_queue.len))
		return -errno;
	/*
	 * connect() sizes the segments (mss_cache) from the MSS known then, and
	 * the repair option below does not size them again: without this they
	 * stay at the 536-byte default, which also keeps the receive window
	 * from growing (ss -tni: mss:524 where it was 1448).  The kernel
	 * takes at most 32767 (MAX_TCP_WINDOW): loopback's 65483 is cut to that.
	 */
	if (e->mss && set_int(sk, SOL_TCP, TCP_MAXSEG, e->mss < 32767 ? e->mss : 32767))
		return -errno;
	if (bind(sk, (struct sockaddr *)&src, sl) || connect(sk, (struct sockaddr *)&dst, dl))
		return -errno;
	opts[n++] = (struct tcp_repair_opt){ TCPOPT_MAXSEG, e->mss };
	if (e->options & OPT_WSCALE)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW,
						     e->snd_wscale | (e->rcv_wscale << 16) };
	if (e->options & OPT_SACK)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERMITTED, 0 };
	if (e->options & OPT_TIMESTAMPS)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
	if (setsockopt(sk, SOL_TCP, TCP_REPAIR_OPTIONS, opts, n * sizeof(opts[0])))
		return -errno;
	if ((e->options & OPT_TIMESTAMPS) && set_int(sk, SOL_TCP, TCP_TIMESTAMP, e->timestamp))
		return -errno;
	if (fill_queue(sk, TCP_RECV_QUEUE, e->recv_queue.data, e->recv_queue.len) ||
	    fill_queue(sk, TCP_SEND_QUEUE, e->send_queue.data, sent))
		return -errno ? -errno : -EIO;
	if (setsockopt(sk, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)))
		return -errno;
	return 0;
}

/* Leave repair mode and send what had never been sent. */
static int finish_repaired(const Crd__TcpSkEntry *e, int sk)
{
	size_t sent = e->send_queue.len - e->unsent, done = 0;

	if (set_int(sk, SOL_TCP, TCP_REPAIR, TCP_REPAIR_OFF))
		return -errno;
	while (done < e->unsent) {
		ssize_t n = send(sk, e->send_queue.data + sent + done, e->unsent - done,
				 MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		done += n;
	}
	return 0;
}

int restore_tcp_sks(Crd__TcpSkEntry **sks, size_t n, int *fds)
{
	size_t i;
	int ret = 0;

	for (i = 0; i < n; i++)
		fds[i] = -1;
	/* listeners first: the connections then share their ports by force */
	for (i = 0; !ret && i < n; i++)
		if (sks[i]->state == TCPF_LISTEN) {
			fds[i] = restore_listen(sks[i]);
			ret = fds[i] < 0 ? fds[i] : 0;
		}
	for (i = 0; !ret && i < n; i++) {
		if (sks[i]->state != TCPF_ESTABLISHED)
			continue;
		fds[i] = new_socket(sks[i]);
		ret = fds[i] < 0 ? fds[i] : 0;
		if (!ret)
			ret = restore_bufs(sks[i], fds[i]);
		if (!ret)
			ret = set_int(fds[i], SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON);
		if (!ret)
			ret = restore_repaired(sks[i], fds[i]);
		if (ret)
			pr_err("TCP connection %lu (port %u -> %u): can't rebuild it: %s\n",
			       sks[i]->id, sks[i]->src_port, sks[i]->dst_port, strerror(-ret));
	}
	/* both ends of every connection exist: they may talk again */
	for (i = 0; !ret && i < n; i++)
		if (sks[i]->state == TCPF_ESTABLISHED) {
			ret = finish_repaired(sks[i], fds[i]);
			if (ret)
				pr_err("TCP connection %lu: can't leave repair mode: %s\n",
				       sks[i]->id, strerror(-ret));
		}
	return ret;
}
