/*
 * UNIX sockets.  sock_diag (NETLINK_SOCK_DIAG, through libnl-3) tells a
 * socket's type, state, peer and shutdown state; the socket itself, taken
 * with pidfd_getfd(), gives its receive queue by peeking with SO_PEEK_OFF,
 * which leaves the data where it is.  Restore makes a socketpair per pair
 * and sends each side's queue from the other side.
 */
#include <errno.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sk-unix.h"
#include "util.h"

#define PEEK_BUF	(256 << 10)
#define SCM_MAX_FDS	253	/* the kernel's limit per message */
#define TCP_ESTABLISHED	1
#define TCP_LISTEN	10
#define TCP_CLOSE_STATE	7

static int on_diag_msg(struct nl_msg *msg, void *arg)
{
	struct unix_table *t = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct unix_diag_msg *m = nlmsg_data(h);
	struct nlattr *tb[UNIX_DIAG_MAX + 1];
	struct unix_diag_info *u;

	if (nlmsg_parse(h, sizeof(*m), tb, UNIX_DIAG_MAX, NULL) < 0)
		return NL_SKIP;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NL_STOP;
	u->ino = m->udiag_ino;
	u->type = m->udiag_type;
	u->state = m->udiag_state;
	if (tb[UNIX_DIAG_PEER])
		u->peer = nla_get_u32(tb[UNIX_DIAG_PEER]);
	if (tb[UNIX_DIAG_SHUTDOWN])
		u->shutdown = nla_get_u8(tb[UNIX_DIAG_SHUTDOWN]);
	if (tb[UNIX_DIAG_ICONS] && nla_len(tb[UNIX_DIAG_ICONS]) >= (int)sizeof(uint32_t)) {
		u->nicons = nla_len(tb[UNIX_DIAG_ICONS]) / sizeof(uint32_t);
		u->icons = malloc(u->nicons * sizeof(uint32_t));
		if (u->icons)
			memcpy(u->icons, nla_data(tb[UNIX_DIAG_ICONS]), u->nicons * sizeof(uint32_t));
		else
			u->nicons = 0;
	}
	if (tb[UNIX_DIAG_VFS])
		u->vfs_ino = ((struct unix_diag_vfs *)nla_data(tb[UNIX_DIAG_VFS]))->udiag_vfs_ino;
	if (tb[UNIX_DIAG_RQLEN])
		u->rqlen = ((struct unix_diag_rqlen *)nla_data(tb[UNIX_DIAG_RQLEN]))->udiag_rqueue;
	if (tb[UNIX_DIAG_NAME]) {
		int len = nla_len(tb[UNIX_DIAG_NAME]);

		/* abstract names start with a NUL: show it as '@' */
		memcpy(u->name, nla_data(tb[UNIX_DIAG_NAME]),
		       len < (int)sizeof(u->name) - 1 ? len : (int)sizeof(u->name) - 1);
		if (len && !u->name[0])
			u->name[0] = '@';
	}
	u->next = t->all;
	t->all = u;
	return NL_OK;
}

static int unix_load(struct unix_table *t)
{
	struct unix_diag_req req = {
		.sdiag_family = AF_UNIX,
		.udiag_states = ~0U,
		.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN |
			      UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS,
	};
	struct nl_sock *sk = nl_socket_alloc();
	int ret;

	if (!sk)
		return -ENOMEM;
	ret = nl_connect(sk, NETLINK_SOCK_DIAG);
	if (!ret)
		ret = nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_diag_msg, t);
	if (!ret)
		ret = nl_send_simple(sk, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, sizeof(req));
	if (ret >= 0)
		ret = nl_recvmsgs_default(sk);
	nl_socket_free(sk);
	if (ret < 0) {
		pr_err("sock_diag of UNIX sockets failed: %s\n", nl_geterror(ret));
		return -EIO;
	}
	t->loaded = true;
	return 0;
}

const struct unix_diag_info *unix_lookup(struct unix_table *t, uint32_t ino)
{
	struct unix_diag_info *u;

	if (!t->loaded && unix_load(t))
		return NULL;
	for (u = t->all; u; u = u->next)
		if (u->ino == ino)
			return u;
	return NULL;
}

void unix_table_free(struct unix_table *t)
{
	while (t->all) {
		struct unix_diag_info *u = t->all;

		t->all = u->next;
		free(u->icons);
		free(u);
	}
	t->loaded = false;
}

static int add_msg(struct arena *a, Crd__UnixSkEntry *e, size_t *cap, const char *buf,
		   size_t len, bool append)
{
	ProtobufCBinaryData *b;

	if (append && e->n_queue) {
		uint8_t *d;

		b = &e->queue[e->n_queue - 1];
		d = arena_alloc(a, b->len + len);
		if (!d)
			return -ENOMEM;
		memcpy(d, b->data, b->len);
		memcpy(d + b->len, buf, len);
		b->data = d;
		b->len += len;
		return 0;
	}
	if (arena_grow(a, (void **)&e->queue, cap, e->n_queue + 1, sizeof(*e->queue)))
		return -ENOMEM;
	b = &e->queue[e->n_queue++];
	b->data = arena_alloc(a, len + 1);
	if (!b->data)
		return -ENOMEM;
	memcpy(b->data, buf, len);
	b->len = len;
	return 0;
}

/* Peeking at SCM_RIGHTS installs the files in flight here: let go of them. */
static void close_peeked_fds(struct msghdr *mh)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t i, n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[64];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(fds, CMSG_DATA(c), (n < 64 ? n : 64) * sizeof(int));
		for (i = 0; i < n && i < 64; i++)
			close(fds[i]);
	}
}

/*
 * Files that came with a peeked message: handed over, or, for credentials or
 * without a taker, refused (and closed).
 */
static int take_scm(const struct unix_scm_cb *cb, struct msghdr *mh, Crd__UnixSkEntry *e,
		    pid_t pid, int fd)
{
	struct cmsghdr *c;
	int ret = 0;

	if (mh->msg_flags & MSG_CTRUNC)
		ret = -ENOTSUP;
	for (c = CMSG_FIRSTHDR(mh); !ret && c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || !cb)
			ret = -ENOTSUP;
	if (ret) {
		close_peeked_fds(mh);
		pr_err("pid %d fd %d: credentials in flight in a UNIX socket (or more files "
		       "than fit) are not supported\n", pid, fd);
		return ret;
	}
	for (c = CMSG_FIRSTHDR(mh); !ret && c; c = CMSG_NXTHDR(mh, c)) {
		int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int), fds[SCM_MAX_FDS];

		memcpy(fds, CMSG_DATA(c), n * sizeof(int));
		ret = cb->on_fds(cb->arg, e, e->n_queue - 1, fds, n);
	}
	return ret;
}

/* Everything in the receive queue of sk, peeked message by message. */
static int peek_queue(const struct unix_scm_cb *cb, struct arena *a, int sk,
		      Crd__UnixSkEntry *e, pid_t pid, int fd)
{
	bool stream = e->type == SOCK_STREAM;
	int off = 0, orig = -1, ret = 0;
	socklen_t olen = sizeof(orig);
	char *buf = malloc(PEEK_BUF);
	bool boundary = false;
	size_t cap = 0;

	if (!buf)
		return -ENOMEM;
	getsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &orig, &olen);
	if (setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off))) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't peek at the socket's queue", pid, fd);
		goto out;
	}
	for (;;) {
		char cbuf[CMSG_SPACE(SCM_MAX_FDS * sizeof(int))];
		struct iovec iov = { buf, PEEK_BUF };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		ssize_t n = recvmsg(sk, &mh, MSG_PEEK | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN)
				ret = -errno;
			break;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			close_peeked_fds(&mh);
			pr_err("pid %d fd %d: a queued message is larger than %d bytes\n", pid, fd,
			       PEEK_BUF);
			ret = -E2BIG;
			break;
		}
		if (!n && stream)
			break;
		/*
		 * A stream peek runs through the data before a message with files
		 * and stops after it, as a plain read does: that chunk stays one
		 * message, refilled with its files.
		 */
		ret = add_msg(a, e, &cap, buf, n, stream && !boundary && !mh.msg_controllen);
		boundary = mh.msg_controllen;
		if (!ret && mh.msg_controllen)
			ret = take_scm(cb, &mh, e, pid, fd);
		if (ret || !n)
			break;
	}
	setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &orig, sizeof(orig));
	if (ret && ret != -ENOTSUP && ret != -E2BIG && ret != -EXDEV)
		pr_err("pid %d fd %d: can't read the socket's queue: %s\n", pid, fd, strerror(-ret));
out:
	free(buf);
	return ret;
}

/*
 * sock_diag gives a name as it was bound; a relative one is found again from
 * the process's cwd, where its socket file must be (same inode).
 */
static int absolute_name(struct arena *a, pid_t pid, int fd, const struct unix_diag_info *u,
			 Crd__UnixSkEntry *e)
{
	char path[PATH_MAX + 128], cwd[PATH_MAX];
	struct stat st;
	ssize_t n;

	if (u->name[0] == '/' || u->name[0] == '@')
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (n > 0) {
		cwd[n] = '\0';
		snprintf(path, sizeof(path), "%s/%s", cwd, u->name);
	}
	if (n <= 0 || stat(path, &st) || !S_ISSOCK(st.st_mode) || st.st_ino != u->vfs_ino) {
		pr_err("pid %d fd %d: UNIX socket bound to the relative name %s, which is not "
		       "its socket file seen from the process's cwd: not supported\n", pid, fd,
		       u->name);
		return -ENOTSUP;
	}
	e->name = arena_strdup(a, path);
	return e->name ? 0 : -ENOMEM;
}

static int dump_pending_client(pid_t pid, int fd, Crd__UnixSkEntry *e)
{
	int sk = task_fd_dup(pid, fd), outq = 0;

	if (sk < 0)
		return sk;
	/* what it sent waits in the unaccepted socket, out of our reach */
	if (ioctl(sk, SIOCOUTQ, &outq) || outq) {
		pr_err("pid %d fd %d: %d bytes sent on a connection its listener has not "
		       "accepted yet: not supported\n", pid, fd, outq);
		close(sk);
		return -ENOTSUP;
	}
	close(sk);
	e->has_shutdown = true;
	return 0;
}

int dump_unix_sk(const struct unix_scm_cb *cb, struct arena *a, struct unix_table *t,
		 pid_t pid, int fd, uint32_t ino, Crd__UnixSkEntry *e)
{
	const struct unix_diag_info *u = unix_lookup(t, ino);
	int sk, ret;

	if (!u)
		return -ENOENT;
	e->id = ino;
	e->type = u->type;
	if (u->name[0]) {
		e->name = arena_strdup(a, u->name);
		if (!e->name)
			return -ENOMEM;
	}
	if (u->name[0] && (u->state == TCP_LISTEN || (u->type == SOCK_DGRAM && !u->peer))) {
		ret = absolute_name(a, pid, fd, u, e);
		if (ret)
			return ret;
	}
	if (u->state == TCP_LISTEN && u->name[0]) {
		e->has_listening = e->listening = true;
		return 0;
	}
	/* a stream socket not connected yet (or blocked in connect(), which restarts) */
	if (u->type != SOCK_DGRAM && u->state == TCP_CLOSE_STATE && !u->peer && !u->name[0]) {
		e->has_unconnected = e->unconnected = true;
		return 0;
	}
	if (u->type == SOCK_DGRAM && !u->peer) {
		e->has_unconnected = e->unconnected = true;
		sk = task_fd_dup(pid, fd);
		if (sk < 0)
			return sk;
		ret = peek_queue(NULL, a, sk, e, pid, fd);
		close(sk);
		if (!ret && e->n_queue && !u->name[0]) {
			pr_err("pid %d fd %d: an unnamed UNIX datagram socket with messages queued: "
			       "not supported yet\n", pid, fd);
			ret = -ENOTSUP;
		}
		return ret;
	}
	/* connected to a connection not accepted yet (no inode): see pending_on() */
	if (u->state == TCP_ESTABLISHED && !u->peer && u->type != SOCK_DGRAM)
		return dump_pending_client(pid, fd, e);
	if (u->state != TCP_ESTABLISHED || !u->peer) {
		pr_err("pid %d fd %d: UNIX socket %u (%s) is not supported yet: only connected "
		       "ones and listeners are\n", pid, fd, ino, u->name[0] ? u->name : "unnamed");
		return -ENOTSUP;
	}
	e->peer = u->peer;
	e->has_shutdown = true;
	e->shutdown = u->shutdown;
	sk = task_fd_dup(pid, fd);
	if (sk < 0) {
		pr_err("pid %d fd %d: can't get the socket: %s\n", pid, fd, strerror(-sk));
		return sk;
	}
	ret = peek_queue(cb, a, sk, e, pid, fd);
	close(sk);
	return ret;
}

/* Send the messages queued for one side from the other. */
static int refill(const Crd__UnixSkEntry *e, int from)
{
	size_t i;

	for (i = 0; i < e->n_queue; i++) {
		size_t done = 0;

		do {
			ssize_t n = send(from, e->queue[i].data + done, e->queue[i].len - done,
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n < 0) {
				pr_perror("UNIX socket %lu: can't refill its queue", e->id);
				return -errno;
			}
			done += n;
		} while (done < e->queue[i].len);
	}
	return 0;
}

static int apply_shutdown(const Crd__UnixSkEntry *e, int fd)
{
	static const int how[] = { -1, SHUT_RD, SHUT_WR, SHUT_RDWR };
	uint32_t s = e->has_shutdown ? e->shutdown & 3 : 0;

	if (s && shutdown(fd, how[s])) {
		pr_perror("UNIX socket %lu: can't shut it down", e->id);
		return -errno;
	}
	return 0;
}

/* name as sock_diag gives it ('@' first: abstract) into an address; its length or -EINVAL */
static int make_addr(const char *name, struct sockaddr_un *sun)
{
	size_t n = strlen(name);

	if (n >= sizeof(sun->sun_path))
		return -EINVAL;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, name, n);
	if (name[0] == '@')
		sun->sun_path[0] = '\0';
	return offsetof(struct sockaddr_un, sun_path) + n;
}

/* A listener bound to its path (a stale socket file there is replaced) and listening. */
static int restore_listener(const Crd__UnixSkEntry *e)
{
	struct sockaddr_un sun;
	int len = make_addr(e->name, &sun);
	struct stat st;
	int sk;

	if (len < 0) {
		pr_err("UNIX listener %lu: name too long\n", e->id);
		return -EINVAL;
	}
	if (e->name[0] != '@' && !lstat(e->name, &st) && S_ISSOCK(st.st_mode))
		unlink(e->name);
	sk = socket(AF_UNIX, e->type, 0);
	if (sk < 0 || bind(sk, (struct sockaddr *)&sun, len) || listen(sk, SOMAXCONN)) {
		pr_perror("UNIX listener %s: can't listen again", e->name);
		if (sk >= 0)
			close(sk);
		return -errno;
	}
	return sk;
}

static int connect_name(const Crd__UnixSkEntry *e)
{
	struct sockaddr_un sun;
	int len = make_addr(e->peer_name, &sun), sk, ret;

	if (len < 0)
		return len;
	sk = socket(AF_UNIX, e->type, 0);
	if (sk < 0)
		return -errno;
	if (connect(sk, (struct sockaddr *)&sun, len)) {
		ret = -errno;
		close(sk);
		return ret;
	}
	return sk;
}

/*
 * A socket connected outside the tree: connected to the same name again
 * (what was queued from the old peer is lost), or, with no name or nobody
 * there, one end of a pair whose other end is closed after refilling the
 * queue: the process reads what it had not read, then sees its peer gone.
 */
static int restore_external(const Crd__UnixSkEntry *e)
{
	int sv[2], sk, ret;

	if (e->peer_name) {
		sk = connect_name(e);
		if (sk >= 0) {
			if (e->n_queue)
				pr_warn("UNIX socket %lu: %zu messages queued from its external peer "
					"are dropped: it is connected to %s anew\n", e->id, e->n_queue,
					e->peer_name);
			pr_info("UNIX socket %lu: connected to %s again\n", e->id, e->peer_name);
			return sk;
		}
		pr_warn("UNIX socket %lu: can't connect to its external peer %s again (%s): its "
			"peer is gone for the tree\n", e->id, e->peer_name, strerror(-sk));
	}
	if (socketpair(AF_UNIX, e->type, 0, sv)) {
		pr_perror("UNIX socket %lu: can't create a socketpair", e->id);
		return -errno;
	}
	ret = refill(e, sv[1]);
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		return ret;
	}
	return sv[0];
}

/*
 * A datagram server: bound again, its queue sent to it from a socket of our
 * own (the messages' senders are not kept).
 */
static int restore_dgram_server(const Crd__UnixSkEntry *e)
{
	struct sockaddr_un sun;
	int len = e->name ? make_addr(e->name, &sun) : 0, sk, tx = -1, ret = 0;
	struct stat st;
	size_t i;

	if (len < 0)
		return len;
	/* an unconnected stream socket is just made again */
	sk = socket(AF_UNIX, e->type, 0);
	if (sk < 0 || e->type != SOCK_DGRAM)
		return sk < 0 ? -errno : sk;
	if (e->name && e->name[0] != '@' && !lstat(e->name, &st) && S_ISSOCK(st.st_mode))
		unlink(e->name);
	if (e->name && bind(sk, (struct sockaddr *)&sun, len))
		ret = -errno;
	if (!ret && e->n_queue && (tx = socket(AF_UNIX, SOCK_DGRAM, 0)) < 0)
		ret = -errno;
	for (i = 0; !ret && i < e->n_queue; i++)
		if (sendto(tx, e->queue[i].data, e->queue[i].len, MSG_DONTWAIT,
			   (struct sockaddr *)&sun, len) < 0)
			ret = -errno;
	if (tx >= 0)
		close(tx);
	if (ret) {
		pr_err("UNIX datagram socket %lu (%s): can't restore it: %s\n", e->id,
		       e->name ?: "unnamed", strerror(-ret));
		close(sk);
		return ret;
	}
	return sk;
}

/* A datagram socket connected to a server of the tree: connected to it again by name. */
static int restore_dgram_client(const Crd__UnixSkEntry *e, const Crd__UnixSkEntry *srv)
{
	struct sockaddr_un sun;
	int len, sk, ret;

	if (!srv->name) {
		pr_err("UNIX socket %lu: connected to the unnamed socket %lu: not supported yet\n",
		       e->id, srv->id);
		return -ENOTSUP;
	}
	len = make_addr(srv->name, &sun);
	sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sk < 0 || len < 0 || connect(sk, (struct sockaddr *)&sun, len)) {
		ret = len < 0 ? len : -errno;
		pr_err("UNIX socket %lu: can't connect to %s again: %s\n", e->id, srv->name,
		       strerror(-ret));
		if (sk >= 0)
			close(sk);
		return ret;
	}
	/* its own queue came from a server that could only send to a name it has not */
	if (e->n_queue)
		pr_warn("UNIX socket %lu: %zu queued messages dropped\n", e->id, e->n_queue);
	return sk;
}

static bool is_unconnected(const Crd__UnixSkEntry *e)
{
	return e->has_unconnected && e->unconnected;
}

/* A connection its listener had not accepted: made again, it waits there again. */
static int restore_pending(Crd__UnixSkEntry **sks, size_t n, const Crd__UnixSkEntry *e)
{
	Crd__UnixSkEntry c = *e;
	size_t j;

	for (j = 0; j < n && sks[j]->id != e->pending_on; j++)
		;
	if (j == n || !sks[j]->name) {
		pr_err("UNIX socket %lu: its listener %lu is not in the images\n", e->id,
		       e->pending_on);
		return -EINVAL;
	}
	c.peer_name = sks[j]->name;
	return connect_name(&c);
}

int restore_unix_sks(Crd__UnixSkEntry **sks, size_t n, int *fds)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		fds[i] = -1;
	/* servers first: their clients connect to them by name */
	for (i = 0; i < n; i++)
		if (is_unconnected(sks[i]) || (sks[i]->has_listening && sks[i]->listening)) {
			if (!is_unconnected(sks[i])) {
				fds[i] = restore_listener(sks[i]);
				if (fds[i] < 0)
					return fds[i];
				continue;
			}
			fds[i] = restore_dgram_server(sks[i]);
			if (fds[i] < 0)
				return fds[i];
		}
	for (i = 0; i < n; i++) {
		int sv[2], ret;

		if (fds[i] >= 0)
			continue;
		if (sks[i]->has_pending_on) {
			fds[i] = restore_pending(sks, n, sks[i]);
			if (fds[i] < 0)
				return fds[i];
			continue;
		}
		for (j = 0; j < n && !(is_unconnected(sks[j]) && sks[j]->id == sks[i]->peer); j++)
			;
		if (j < n) {
			fds[i] = restore_dgram_client(sks[i], sks[j]);
			if (fds[i] < 0)
				return fds[i];
			continue;
		}
		if (sks[i]->has_listening && sks[i]->listening) {
			fds[i] = restore_listener(sks[i]);
			if (fds[i] < 0)
				return fds[i];
			continue;
		}
		if (sks[i]->has_external && sks[i]->external) {
			fds[i] = restore_external(sks[i]);
			if (fds[i] < 0)
				return fds[i];
			continue;
		}
		for (j = 0; j < n && !(sks[j]->id == sks[i]->peer && sks[j]->peer == sks[i]->id);
		     j++)
			;
		if (j == n || j == i) {
			pr_err("UNIX socket %lu: its peer %lu is not in the images\n", sks[i]->id,
			       sks[i]->peer);
			return -EINVAL;
		}
		if (socketpair(AF_UNIX, sks[i]->type, 0, sv)) {
			pr_perror("UNIX socket %lu: can't create a socketpair", sks[i]->id);
			return -errno;
		}
		fds[i] = sv[0];
		fds[j] = sv[1];
		/* queues with files in flight are refilled once the files exist */
		ret = sks[i]->n_scm ? 0 : refill(sks[i], sv[1]);
		if (!ret && !sks[j]->n_scm)
			ret = refill(sks[j], sv[0]);
		if (!ret)
			ret = apply_shutdown(sks[i], sv[0]);
		if (!ret)
			ret = apply_shutdown(sks[j], sv[1]);
		if (ret)
			return ret;
	}
	return 0;
}

static const Crd__UnixScm *scm_for(const Crd__UnixSkEntry *e, uint32_t msg)
{
	size_t i;

	for (i = 0; i < e->n_scm; i++)
		if (e->scm[i]->msg == msg)
			return e->scm[i];
	return NULL;
}

static int send_with_files(const Crd__UnixSkEntry *e, int from, size_t k,
			   const Crd__UnixScm *m, int (*file_fd)(void *arg, uint64_t id),
			   void *arg)
{
	char cbuf[CMSG_SPACE(SCM_MAX_FDS * sizeof(int))] = { };
	struct iovec iov = { e->queue[k].data, e->queue[k].len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int *fds;
	size_t i;

	if (m->n_file_ids > SCM_MAX_FDS)
		return -E2BIG;
	mh.msg_control = cbuf;
	mh.msg_controllen = CMSG_SPACE(m->n_file_ids * sizeof(int));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(m->n_file_ids * sizeof(int));
	fds = (int *)CMSG_DATA(c);
	for (i = 0; i < m->n_file_ids; i++) {
		fds[i] = file_fd(arg, m->file_ids[i]);
		if (fds[i] < 0) {
			pr_err("UNIX socket %lu: file %lu in flight was not restored\n", e->id,
			       m->file_ids[i]);
			return -ENOENT;
		}
	}
	if (sendmsg(from, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)e->queue[k].len)
		return -errno ?: -EIO;
	return 0;
}

int unix_refill_scm(Crd__UnixSkEntry **sks, size_t n, const int *fds,
		    int (*file_fd)(void *arg, uint64_t id), void *arg)
{
	size_t i, j, k;
	int ret = 0;

	for (i = 0; !ret && i < n; i++) {
		if (!sks[i]->n_scm)
			continue;
		for (j = 0; j < n && sks[j]->id != sks[i]->peer; j++)
			;
		if (j == n) {
			pr_err("UNIX socket %lu: files in flight from outside the tree: not "
			       "supported\n", sks[i]->id);
			return -ENOTSUP;
		}
		for (k = 0; !ret && k < sks[i]->n_queue; k++) {
			const Crd__UnixScm *m = scm_for(sks[i], k);
			Crd__UnixSkEntry one = *sks[i];

			if (m) {
				ret = send_with_files(sks[i], fds[j], k, m, file_fd, arg);
				continue;
			}
			/* one message of the queue, sent as refill() sends them all */
			one.n_queue = 1;
			one.queue = &sks[i]->queue[k];
			ret = refill(&one, fds[j]);
		}
		if (ret)
			pr_err("UNIX socket %lu: can't refill its queue with files in flight: "
			       "%s\n", sks[i]->id, strerror(-ret));
	}
	return ret;
}
