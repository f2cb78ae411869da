/*
 * File descriptors (API in files.h).
 *
 * Dump: each fd is resolved to its open file description; fds sharing one
 * (found with kcmp among candidates on the same inode) share a FileEntry.
 * Pipe buffers are copied with tee(), which leaves the data in the pipe.
 *
 * Restore: every description is opened once in the orchestrator, at fds >=
 * base, before the tree exists; the processes inherit them all and dup2()
 * their own into place, so descriptions (and file offsets) are shared exactly
 * as they were.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "arena.h"
#include "files-anon.h"
#include "files.h"
#include "log.h"
#include "netlock.h"
#include "sk-tcp.h"
#include "sk-udp.h"
#include "tty.h"
#include "sk-unix.h"
#include "util.h"

struct ft_file {
	Crd__FileEntry *e;
	pid_t pid;		/* one (pid, fd) holding the description, for kcmp */
	int fd;
	dev_t dev;
	ino_t ino;
};

/* A file in flight: our copy of it, and the message it travels with. */
struct inflight {
	int fd;
	Crd__UnixSkEntry *sk;
	uint32_t msg;
};

struct file_table {
	struct arena a;
	struct ft_file *files;
	size_t n_files, cap_files;
	Crd__FileEntry **entries;
	size_t cap_entries;
	Crd__PipeEntry **pipes;
	size_t n_pipes, cap_pipes;
	struct unix_table usk;
	Crd__UnixSkEntry **sks;
	size_t n_sks, cap_sks;
	struct tcp_table *tcp;
	Crd__TcpSkEntry **tcps;
	size_t n_tcps, cap_tcps;
	Crd__UdpSkEntry **udps;
	size_t n_udps, cap_udps;
	bool shell_job;
	const char **external;	/* dump --external specs */
	int n_external;
	pid_t lock_tag;		/* the tree whose connections we lock, 0: none yet */
	struct unix_scm_cb scm_cb;
	struct inflight *inflight;	/* files in flight in UNIX sockets, held here */
	size_t n_inflight, cap_inflight;
	int netns_fd;		/* its network namespace, where the lock lives */
};

static int note_inflight(void *arg, Crd__UnixSkEntry *e, uint32_t msg, const int *fds, int n)
{
	struct file_table *ft = arg;
	int i;

	for (i = 0; i < n; i++) {
		if (arena_grow(&ft->a, (void **)&ft->inflight, &ft->cap_inflight,
			       ft->n_inflight + 1, sizeof(*ft->inflight))) {
			for (; i < n; i++)
				close(fds[i]);
			return -ENOMEM;
		}
		ft->inflight[ft->n_inflight++] = (struct inflight){ fds[i], e, msg };
	}
	return 0;
}

struct file_table *file_table_new(void)
{
	struct file_table *ft = calloc(1, sizeof(struct file_table));

	if (ft) {
		ft->tcp = tcp_table_new();
		ft->netns_fd = -1;
		ft->scm_cb = (struct unix_scm_cb){ note_inflight, ft };
	}
	if (ft && !ft->tcp) {
		free(ft);
		ft = NULL;
	}
	return ft;
}

void file_table_set_shell_job(struct file_table *ft, bool shell_job)
{
	ft->shell_job = shell_job;
}

void file_table_set_external(struct file_table *ft, const char **ext, int n)
{
	ft->external = ext;
	ft->n_external = n;
}

void file_table_close_sockets(struct file_table *ft, bool resume)
{
	tcp_table_free(ft->tcp, resume);
	ft->tcp = NULL;
}

int file_table_net_unlock(struct file_table *ft)
{
	int ret = 0;

	if (ft->lock_tag)
		ret = netlock_unlock(ft->netns_fd, ft->lock_tag);
	ft->lock_tag = 0;
	return ret;
}

bool file_table_net_locked(const struct file_table *ft)
{
	return ft->lock_tag != 0;
}

/*
 * Lock the connections before they are read: from here on neither side
 * moves, whatever happens to this dump.  The tree's root names the lock.
 */
static int net_lock(struct file_table *ft, pid_t root)
{
	char path[64];
	int ret;

	if (!ft->n_tcps)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", root);
	ft->netns_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (ft->netns_fd < 0) {
		ret = -errno;
		pr_perror("tree %d: can't open its network namespace", root);
		return ret;
	}
	ret = netlock_lock(ft->netns_fd, root, ft->tcps, ft->n_tcps);
	if (!ret)
		ft->lock_tag = root;
	return ret;
}

void file_table_free(struct file_table *ft)
{
	size_t i;

	for (i = 0; i < ft->n_inflight; i++)
		close(ft->inflight[i].fd);
	file_table_close_sockets(ft, false);
	if (ft->netns_fd >= 0)
		close(ft->netns_fd);
	unix_table_free(&ft->usk);
	arena_free(&ft->a);
	free(ft);
}

static int kcmp_file(pid_t p1, pid_t p2, int fd1, int fd2)
{
	return syscall(SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2);
}

static struct ft_file *find_desc(struct file_table *ft, pid_t pid, int fd,
				 const struct stat *st)
{
	size_t i;

	for (i = 0; i < ft->n_files; i++) {
		struct ft_file *f = &ft->files[i];

		if (f->dev == st->st_dev && f->ino == st->st_ino &&
		    !kcmp_file(pid, f->pid, fd, f->fd))
			return f;
	}
	return NULL;
}

static int parse_fdinfo(pid_t pid, int fd, uint64_t *pos, uint32_t *flags)
{
	char path[64], *buf, *p;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
	ret = read_file(path, &buf);
	if (ret < 0) {
		pr_err("pid %d fd %d: can't read %s: %s\n", pid, fd, path, strerror(-ret));
		return ret;
	}
	p = strstr(buf, "pos:");
	*pos = p ? strtoull(p + 4, NULL, 10) : 0;
	p = strstr(buf, "flags:");
	*flags = p ? strtoul(p + 6, NULL, 8) : 0;
	free(buf);
	return 0;
}

static Crd__PipeEntry *find_pipe(struct file_table *ft, uint64_t id)
{
	size_t i;

	for (i = 0; i < ft->n_pipes; i++)
		if (ft->pipes[i]->id == id)
			return ft->pipes[i];
	return NULL;
}

/* Copy what is buffered in the pipe behind /proc/PID/fd/FD without consuming it. */
static int dump_pipe_data(struct file_table *ft, pid_t pid, int fd, uint64_t id)
{
	Crd__PipeEntry *pe;
	char path[64];
	int src, p[2] = { -1, -1 }, ret = 0, size;
	ssize_t n;

	if (find_pipe(ft, id))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	src = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (src < 0) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't open the pipe", pid, fd);
		return ret;
	}
	size = fcntl(src, F_GETPIPE_SZ);
	pe = arena_alloc(&ft->a, sizeof(*pe));
	if (!pe || size < 0 || pipe2(p, O_NONBLOCK | O_CLOEXEC) ||
	    fcntl(p[1], F_SETPIPE_SZ, size) < size) {
		ret = -errno ? -errno : -ENOMEM;
		pr_perror("pid %d fd %d: can't set up the pipe copy", pid, fd);
		goto out;
	}
	crd__pipe_entry__init(pe);
	pe->id = id;
	pe->buf_size = size;
	n = tee(src, p[1], size, SPLICE_F_NONBLOCK);
	if (n < 0 && errno != EAGAIN) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't copy the pipe buffer", pid, fd);
		goto out;
	}
	if (n > 0) {
		pe->has_data = true;
		pe->data.data = arena_alloc(&ft->a, n);
		if (!pe->data.data || read_all(p[0], pe->data.data, n) != n) {
			ret = -EIO;
			pr_err("pid %d fd %d: can't read the pipe copy\n", pid, fd);
			goto out;
		}
		pe->data.len = n;
	}
	if (arena_grow(&ft->a, (void **)&ft->pipes, &ft->cap_pipes, ft->n_pipes + 1,
		       sizeof(*ft->pipes))) {
		ret = -ENOMEM;
		goto out;
	}
	ft->pipes[ft->n_pipes++] = pe;
out:
	close(src);
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	return ret;
}

/* A zeroed element appended to the array *arr of *n (*cap allocated), or NULL. */
static void *append_new(struct arena *a, void ***arr, size_t *n, size_t *cap, size_t size)
{
	void *p = arena_alloc(a, size);

	if (!p || arena_grow(a, (void **)arr, cap, *n + 1, sizeof(**arr)))
		return NULL;
	(*arr)[(*n)++] = p;
	return p;
}

/* UNIX, TCP and UDP sockets; anything else is refused with its name. */
static int dump_socket(struct file_table *ft, pid_t pid, int fd, const char *link,
		       const struct stat *st, Crd__FileEntry *e)
{
	if (unix_lookup(&ft->usk, st->st_ino)) {
		Crd__UnixSkEntry *u = append_new(&ft->a, (void ***)&ft->sks, &ft->n_sks,
						 &ft->cap_sks, sizeof(*u));

		if (!u)
			return -ENOMEM;
		crd__unix_sk_entry__init(u);
		e->type = CRD__FILE_TYPE__FILE_UNIX;
		e->has_unix_id = true;
		e->unix_id = st->st_ino;
		return dump_unix_sk(&ft->scm_cb, &ft->a, &ft->usk, pid, fd, st->st_ino, u);
	}
	if (tcp_probe(pid, fd) == 1) {
		Crd__TcpSkEntry *t = append_new(&ft->a, (void ***)&ft->tcps, &ft->n_tcps,
						&ft->cap_tcps, sizeof(*t));

		if (!t)
			return -ENOMEM;
		crd__tcp_sk_entry__init(t);
		e->type = CRD__FILE_TYPE__FILE_TCP;
		e->has_tcp_id = true;
		e->tcp_id = st->st_ino;
		return tcp_collect(ft->tcp, &ft->a, pid, fd, st->st_ino, t);
	}
	if (udp_probe(pid, fd) == 1) {
		Crd__UdpSkEntry *u = append_new(&ft->a, (void ***)&ft->udps, &ft->n_udps,
						&ft->cap_udps, sizeof(*u));

		if (!u)
			return -ENOMEM;
		crd__udp_sk_entry__init(u);
		e->type = CRD__FILE_TYPE__FILE_UDP;
		e->has_udp_id = true;
		e->udp_id = st->st_ino;
		return dump_udp_sk(&ft->a, pid, fd, st->st_ino, u);
	}
	pr_err("pid %d fd %d: unsupported file type %s\n", pid, fd, link);
	return -ENOTSUP;
}

static int new_desc(struct file_table *ft, pid_t pid, int fd, const char *link,
		    const struct stat *st, uint64_t pos, uint32_t flags, struct ft_file **out)
{
	Crd__FileEntry *e = arena_alloc(&ft->a, sizeof(*e));
	struct ft_file *f;
	int ret = 0;

	if (!e || arena_grow(&ft->a, (void **)&ft->files, &ft->cap_files, ft->n_files + 1,
			     sizeof(*ft->files)))
		return -ENOMEM;
	crd__file_entry__init(e);
	e->id = ft->n_files + 1;
	e->flags = flags & ~O_CLOEXEC;
	e->has_mode = true;
	e->mode = st->st_mode;
	if (!strncmp(link, "anon_inode:", 11)) {
		char path[64], *info;

		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
		ret = read_file(path, &info);
		if (ret < 0) {
			pr_err("pid %d fd %d: can't read %s\n", pid, fd, path);
			return ret;
		}
		ret = dump_anon_fd(&ft->a, pid, fd, link, info, e);
		free(info);
	} else if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISCHR(st->st_mode)) {
		if (S_ISREG(st->st_mode) && (strstr(link, " (deleted)") || st->st_nlink == 0 ||
					     !strncmp(link, "/memfd:", 7))) {
			/* no path leads to it: its contents go into a shmem image */
			e->has_shmid = true;
			e->shmid = st->st_ino;
		} else if (strstr(link, " (deleted)") || st->st_nlink == 0) {
			pr_err("pid %d fd %d: %s is deleted: not supported yet\n", pid, fd, link);
			return -ENOTSUP;
		}
		if (S_ISCHR(st->st_mode) && tty_is_pty(link)) {
			ret = dump_tty(&ft->a, pid, fd, link, e);
			if (ret)
				return ret;
		} else if (S_ISCHR(st->st_mode) && !strncmp(link, "/dev/tty", 8)) {
			pr_err("pid %d fd %d: terminal %s is not supported yet\n", pid, fd, link);
			return -ENOTSUP;
		}
		if (e->type != CRD__FILE_TYPE__FILE_TTY)
			e->type = S_ISREG(st->st_mode) ? CRD__FILE_TYPE__FILE_REG :
				  S_ISDIR(st->st_mode) ? CRD__FILE_TYPE__FILE_DIR :
							 CRD__FILE_TYPE__FILE_CHR;
		e->path = arena_strdup(&ft->a, link);
		e->has_pos = true;
		e->pos = pos;
		if (S_ISREG(st->st_mode)) {
			e->has_size = true;
			e->size = st->st_size;
		}
		if (S_ISCHR(st->st_mode)) {
			e->has_rdev = true;
			e->rdev = st->st_rdev;
		}
	} else if (S_ISFIFO(st->st_mode)) {
		bool anon = !strncmp(link, "pipe:[", 6);

		e->type = anon ? CRD__FILE_TYPE__FILE_PIPE : CRD__FILE_TYPE__FILE_FIFO;
		if (!anon)
			e->path = arena_strdup(&ft->a, link);
		e->has_pipe_id = true;
		e->pipe_id = st->st_ino;
		ret = dump_pipe_data(ft, pid, fd, st->st_ino);
	} else if (S_ISSOCK(st->st_mode)) {
		ret = dump_socket(ft, pid, fd, link, st, e);
	} else {
		pr_err("pid %d fd %d: unsupported file type %s\n", pid, fd, link);
		return -ENOTSUP;
	}
	if (ret)
		return ret;
	f = &ft->files[ft->n_files++];
	f->e = e;
	f->pid = pid;
	f->fd = fd;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	*out = f;
	return 0;
}

static int dump_one_fd(struct file_table *ft, pid_t pid, int fd, Crd__FdEntry *fe)
{
	char path[64], link[PATH_MAX];
	struct ft_file *f;
	struct stat st;
	uint32_t flags;
	uint64_t pos;
	ssize_t n;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0 || stat(path, &st)) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't inspect", pid, fd);
		return ret;
	}
	link[n] = '\0';
	ret = parse_fdinfo(pid, fd, &pos, &flags);
	if (ret)
		return ret;
	f = find_desc(ft, pid, fd, &st);
	if (!f) {
		ret = new_desc(ft, pid, fd, link, &st, pos, flags, &f);
		if (ret)
			return ret;
	}
	fe->fd = fd;
	fe->file_id = f->e->id;
	fe->cloexec = flags & O_CLOEXEC;
	return 0;
}

int dump_task_fds(struct file_table *ft, pid_t pid, Crd__TaskEntry *te)
{
	char path[64];
	struct dirent *de;
	size_t cap = 0;
	DIR *d;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d) {
		ret = -errno;
		pr_perror("pid %d: can't list its fds", pid);
		return ret;
	}
	while (!ret && (de = readdir(d))) {
		Crd__FdEntry *fe;
		long fd;

		if (parse_int(de->d_name, &fd))
			continue;
		fe = arena_alloc(&ft->a, sizeof(*fe));
		if (!fe || arena_grow(&ft->a, (void **)&te->fds, &cap, te->n_fds + 1,
				      sizeof(*te->fds))) {
			ret = -ENOMEM;
			break;
		}
		crd__fd_entry__init(fe);
		ret = dump_one_fd(ft, pid, fd, fe);
		if (!ret)
			te->fds[te->n_fds++] = fe;
	}
	closedir(d);
	return ret;
}

/* Did the user say that socket id, connected to a socket named name, is external? */
static bool external_allowed(const struct file_table *ft, uint64_t id, const char *name)
{
	char ino[32];
	int i;

	snprintf(ino, sizeof(ino), "unix:%lu", id);
	for (i = 0; i < ft->n_external; i++)
		if (!strcmp(ft->external[i], ino) ||
		    (name[0] && !strncmp(ft->external[i], "unix:", 5) &&
		     !strcmp(ft->external[i] + 5, name)))
			return true;
	return false;
}

static bool has_icon(const struct unix_diag_info *l, uint64_t ino)
{
	uint32_t k;

	for (k = 0; l && k < l->nicons; k++)
		if (l->icons[k] == ino)
			return true;
	return false;
}

/*
 * Is e a connection that a listener of the tree has not accepted yet?  The
 * listener lists its waiting clients; 1 (and it is noted) or 0.
 */
static int pending_on(struct file_table *ft, Crd__UnixSkEntry *e)
{
	size_t j;

	if (e->peer)
		return 0;
	for (j = 0; j < ft->n_sks; j++) {
		Crd__UnixSkEntry *l = ft->sks[j];

		if (!(l->has_listening && l->listening) ||
		    !has_icon(unix_lookup(&ft->usk, l->id), e->id))
			continue;
		e->has_pending_on = true;
		e->pending_on = l->id;
		return 1;
	}
	return 0;
}

/* Connections waiting on a listener must all come from the tree: they connect again. */
static int check_listeners(struct file_table *ft)
{
	size_t i, j;
	uint32_t k;

	for (i = 0; i < ft->n_sks; i++) {
		const struct unix_diag_info *u;

		if (!(ft->sks[i]->has_listening && ft->sks[i]->listening))
			continue;
		u = unix_lookup(&ft->usk, ft->sks[i]->id);
		for (k = 0; u && k < u->nicons; k++) {
			for (j = 0; j < ft->n_sks && ft->sks[j]->id != u->icons[k]; j++)
				;
			if (j == ft->n_sks) {
				pr_err("UNIX listener %s has a connection waiting from outside the "
				       "tree: not supported\n", ft->sks[i]->name);
				return -ENOTSUP;
			}
		}
	}
	return 0;
}

/*
 * A UNIX socket whose peer is outside the tree can't be restored as it was:
 * refused, unless --external names it or its peer's path; then restore
 * connects to that path again.
 */
static int check_unix_peers(struct file_table *ft)
{
	const struct unix_diag_info *peer;
	Crd__UnixSkEntry *e;
	size_t i, j;
	int ret;

	ret = check_listeners(ft);
	if (ret)
		return ret;
	for (i = 0; i < ft->n_sks; i++) {
		e = ft->sks[i];
		if ((e->has_listening && e->listening) || (e->has_unconnected && e->unconnected))
			continue;
		for (j = 0; j < ft->n_sks && ft->sks[j]->id != e->peer; j++)
			;
		if (j < ft->n_sks)
			continue;
		ret = pending_on(ft, e);
		if (ret < 0)
			return ret;
		if (ret)
			continue;
		peer = unix_lookup(&ft->usk, e->peer);
		if (!external_allowed(ft, e->id, peer ? peer->name : "")) {
			pr_err("UNIX socket %lu is connected to socket %lu%s%s outside the dumped "
			       "tree: give --external unix:%lu%s%s to dump it as external\n",
			       e->id, e->peer, peer && peer->name[0] ? " at " : "",
			       peer ? peer->name : "", e->id,
			       peer && peer->name[0] ? " or unix:" : "", peer ? peer->name : "");
			return -ENOTSUP;
		}
		e->has_external = e->external = true;
		if (peer && peer->name[0])
			e->peer_name = arena_strdup(&ft->a, peer->name);
		pr_info("UNIX socket %lu: external, peer %lu %s\n", e->id, e->peer,
			e->peer_name ? e->peer_name : "(unnamed)");
	}
	return 0;
}

/* Room for one more in an arena array without a capacity (short ones). */
static int grow_copy(struct arena *a, void **arr, size_t n, size_t sz)
{
	void *p = arena_alloc(a, (n + 1) * sz);

	if (!p)
		return -ENOMEM;
	if (n)
		memcpy(p, *arr, n * sz);
	*arr = p;
	return 0;
}

static Crd__UnixScm *scm_of(struct arena *a, Crd__UnixSkEntry *e, uint32_t msg)
{
	Crd__UnixScm *m;

	if (e->n_scm && e->scm[e->n_scm - 1]->msg == msg)
		return e->scm[e->n_scm - 1];
	m = arena_alloc(a, sizeof(*m));
	if (!m || grow_copy(a, (void **)&e->scm, e->n_scm, sizeof(*e->scm)))
		return NULL;
	crd__unix_scm__init(m);
	m->msg = msg;
	e->scm[e->n_scm++] = m;
	return m;
}

/*
 * Files in flight are dumped like the tree's own, as held by crd: shared
 * with the tree's fds where they are the same open file, or on their own.
 */
int file_table_dump_inflight(struct file_table *ft)
{
	pid_t self = getpid();
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < ft->n_inflight; i++) {
		struct inflight *in = &ft->inflight[i];
		Crd__UnixScm *m = scm_of(&ft->a, in->sk, in->msg);
		Crd__FdEntry fe;

		if (!m || grow_copy(&ft->a, (void **)&m->file_ids, m->n_file_ids,
				     sizeof(*m->file_ids)))
			return -ENOMEM;
		crd__fd_entry__init(&fe);
		ret = dump_one_fd(ft, self, in->fd, &fe);
		if (ret)
			pr_err("UNIX socket %lu: a file in flight can't be dumped\n", in->sk->id);
		else
			m->file_ids[m->n_file_ids++] = fe.file_id;
	}
	return ret;
}

int file_table_for_each_shmem(struct file_table *ft,
			      int (*fn)(void *arg, pid_t pid, int fd, const Crd__FileEntry *e),
			      void *arg)
{
	size_t i;
	int ret;

	for (i = 0; i < ft->n_files; i++) {
		if (!ft->files[i].e->has_shmid)
			continue;
		ret = fn(arg, ft->files[i].pid, ft->files[i].fd, ft->files[i].e);
		if (ret)
			return ret;
	}
	return 0;
}

int file_table_fill_inventory(struct file_table *ft, Crd__Inventory *inv, pid_t root)
{
	size_t i;
	int ret;

	ret = check_unix_peers(ft);
	if (ret)
		return ret;

	ret = net_lock(ft, root);
	if (!ret)
		ret = tcp_dump_all(ft->tcp, &ft->a);
	if (ret)
		return ret;
	inv->tcp_sks = ft->tcps;
	inv->n_tcp_sks = ft->n_tcps;
	inv->udp_sks = ft->udps;
	inv->n_udp_sks = ft->n_udps;
	if (arena_grow(&ft->a, (void **)&ft->entries, &ft->cap_entries, ft->n_files + 1,
		       sizeof(*ft->entries)))
		return -ENOMEM;
	for (i = 0; i < ft->n_files; i++)
		ft->entries[i] = ft->files[i].e;
	ret = tty_check_pairs(ft->entries, ft->n_files, ft->shell_job);
	if (ret)
		return ret;
	inv->files = ft->entries;
	inv->n_files = ft->n_files;
	inv->pipes = ft->pipes;
	inv->n_pipes = ft->n_pipes;
	inv->unix_sks = ft->sks;
	inv->n_unix_sks = ft->n_sks;
	return 0;
}

/* ------------------------------------------------------------------ restore */

struct fdr_obj {
	uint64_t id;
	int fd;
};

struct fd_restore {
	const Crd__Inventory *inv;
	bool shell_job;
	struct tty_restore *tty;
	int (*shmem_fd)(const void *arg, uint64_t id);
	const void *shmem_arg;
	struct fdr_obj *objs;
	size_t n;
	uint64_t *fifos_filled;	/* FIFOs whose buffer is refilled already */
	size_t n_fifos;
	int next;		/* next free fd >= base */
};

/* Move fd to the next slot >= base. */
static int fdr_place(struct fd_restore *fr, int fd)
{
	int nfd = fcntl(fd, F_DUPFD, fr->next);

	if (nfd < 0) {
		int ret = -errno;

		pr_perror("can't move fd %d above %d", fd, fr->next);
		close(fd);
		return ret;
	}
	close(fd);
	fr->next = nfd + 1;
	return nfd;
}

struct pipe_fds {
	uint64_t id;
	int rd, wr;		/* placed ends */
	bool rd_used, wr_used;
};

static int prepare_pipe(struct fd_restore *fr, const Crd__PipeEntry *pe, struct pipe_fds *pf)
{
	int p[2];

	if (pipe2(p, O_NONBLOCK)) {
		int ret = -errno;

		pr_perror("pipe %lu: can't create", pe->id);
		return ret;
	}
	if (fcntl(p[1], F_SETPIPE_SZ, pe->buf_size) < 0)
		pr_warn("pipe %lu: can't set its size to %u: %s\n", pe->id, pe->buf_size,
			strerror(errno));
	if (pe->has_data && write_all(p[1], pe->data.data, pe->data.len)) {
		pr_err("pipe %lu: can't refill its %zu buffered bytes\n", pe->id, pe->data.len);
		close(p[0]);
		close(p[1]);
		return -EIO;
	}
	pf->id = pe->id;
	pf->rd = fdr_place(fr, p[0]);
	pf->wr = fdr_place(fr, p[1]);
	return pf->rd < 0 || pf->wr < 0 ? -EBADF : 0;
}

/* A pipe end for e: the prepared one, or a new description of it via /proc. */
static int open_pipe_end(const Crd__FileEntry *e, struct pipe_fds *pf)
{
	bool wr = (e->flags & O_ACCMODE) == O_WRONLY;
	bool *used = wr ? &pf->wr_used : &pf->rd_used;
	int fd = wr ? pf->wr : pf->rd;
	char path[64];

	if (!*used) {
		*used = true;
		return fcntl(fd, F_DUPFD, 0);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, (e->flags & O_ACCMODE) | O_NONBLOCK);
}

/* A FIFO's buffer is refilled once, however many of its ends the tree holds. */
static bool fifo_needs_data(struct fd_restore *fr, uint64_t id)
{
	size_t i;

	for (i = 0; i < fr->n_fifos; i++)
		if (fr->fifos_filled[i] == id)
			return false;
	fr->fifos_filled[fr->n_fifos++] = id;
	return true;
}

static int open_fifo(const Crd__FileEntry *e, const Crd__PipeEntry *pe,
		     struct fd_restore *fr)
{
	int holder, fd;

	/* hold the FIFO open read-write so it keeps its data and nothing blocks */
	holder = open(e->path, O_RDWR | O_NONBLOCK);
	if (holder < 0) {
		pr_perror("FIFO %s: can't open", e->path);
		return -errno;
	}
	if (pe && pe->has_data && fifo_needs_data(fr, pe->id) &&
	    write_all(holder, pe->data.data, pe->data.len)) {
		pr_err("FIFO %s: can't refill its buffer\n", e->path);
		close(holder);
		return -EIO;
	}
	fd = open(e->path, (e->flags & O_ACCMODE) | O_NONBLOCK);
	if (fd < 0)
		pr_perror("FIFO %s: can't open", e->path);
	if (fdr_place(fr, holder) < 0) {
		if (fd >= 0)
			close(fd);
		return -EBADF;
	}
	return fd;
}

static int open_file(const Crd__FileEntry *e)
{
	struct stat st;
	int fd, flags = e->flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC);

	if (e->type == CRD__FILE_TYPE__FILE_DIR)
		flags = O_RDONLY | O_DIRECTORY;
	fd = open(e->path, flags);
	if (fd < 0) {
		int ret = -errno;

		pr_perror("file %s: can't open", e->path);
		return ret;
	}
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	/*
	 * Shorter than at the dump: what the tree had written or would read is
	 * gone.  Longer: a job restarted from a checkpoint finds the output it
	 * wrote after it, and writes on from where it was then (O_APPEND: at
	 * the end).
	 */
	if (e->type == CRD__FILE_TYPE__FILE_REG && e->has_size && st.st_size < (off_t)e->size) {
		pr_err("file %s: size is %lld, was %llu at dump time: it was cut since\n",
		       e->path, (long long)st.st_size, (unsigned long long)e->size);
		close(fd);
		return -ESTALE;
	}
	if (e->type == CRD__FILE_TYPE__FILE_REG && e->has_size && st.st_size > (off_t)e->size &&
	    (e->flags & O_ACCMODE) != O_RDONLY && !(e->flags & O_APPEND))
		pr_warn("file %s: grew from %llu to %lld bytes since the dump; the tree writes "
			"on from offset %llu\n", e->path, (unsigned long long)e->size,
			(long long)st.st_size, (unsigned long long)e->pos);
	if (e->type == CRD__FILE_TYPE__FILE_CHR && e->has_rdev && st.st_rdev != e->rdev) {
		pr_err("device %s: is %u:%u, was %u:%u at dump time\n", e->path,
		       major(st.st_rdev), minor(st.st_rdev), major(e->rdev), minor(e->rdev));
		close(fd);
		return -ESTALE;
	}
	if (e->has_pos && e->type != CRD__FILE_TYPE__FILE_CHR &&
	    lseek(fd, e->pos, SEEK_SET) < 0) {
		int ret = -errno;

		pr_perror("file %s: can't seek to %llu", e->path, (unsigned long long)e->pos);
		close(fd);
		return ret;
	}
	return fd;
}

/* A file without a path: a new description of its memfd, at its offset. */
static int open_shmem_file(const struct fd_restore *fr, const Crd__FileEntry *e)
{
	int mfd = fr->shmem_fd(fr->shmem_arg, e->shmid), fd;
	char path[64];

	if (mfd < 0) {
		pr_err("file %lu (%s): its contents are missing from the images\n", e->id,
		       e->path ? e->path : "?");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	/* through the /proc link: O_NOFOLLOW would refuse it */
	fd = open(path, e->flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC | O_NOFOLLOW));
	if (fd < 0) {
		pr_perror("file %lu (%s): can't reopen its memfd", e->id, e->path);
		return -errno;
	}
	if (e->has_pos && lseek(fd, e->pos, SEEK_SET) < 0) {
		pr_perror("file %lu (%s): can't seek", e->id, e->path);
		close(fd);
		return -errno;
	}
	return fd;
}

static const Crd__PipeEntry *inv_pipe(const Crd__Inventory *inv, uint64_t id)
{
	size_t i;

	for (i = 0; i < inv->n_pipes; i++)
		if (inv->pipes[i]->id == id)
			return inv->pipes[i];
	return NULL;
}

/* Index of the message whose id is want in an array of n, or n if none is. */
#define INDEX_OF(arr, n, want) ({				\
	size_t __i = 0;						\
	while (__i < (n) && (arr)[__i]->id != (want))		\
		__i++;						\
	__i;							\
})

static int missing(const Crd__FileEntry *e, const char *what, uint64_t id)
{
	pr_err("file %lu: its %s %lu is missing from the inventory\n", e->id, what, id);
	return -EINVAL;
}

static int prepare_one(const Crd__Inventory *inv, const Crd__FileEntry *e,
		       struct fd_restore *fr, struct pipe_fds *pfs, const int *skfds,
		       const int *tcpfds)
{
	size_t i;
	int fd;

	switch (e->type) {
	case CRD__FILE_TYPE__FILE_TTY:
		fd = tty_open(fr->tty, e);
		break;
	case CRD__FILE_TYPE__FILE_UDP:
		i = INDEX_OF(inv->udp_sks, inv->n_udp_sks, e->udp_id);
		if (i == inv->n_udp_sks)
			return missing(e, "UDP socket", e->udp_id);
		fd = restore_udp_sk(inv->udp_sks[i]);
		break;
	case CRD__FILE_TYPE__FILE_TCP:
		i = INDEX_OF(inv->tcp_sks, inv->n_tcp_sks, e->tcp_id);
		if (i == inv->n_tcp_sks)
			return missing(e, "TCP socket", e->tcp_id);
		fd = fcntl(tcpfds[i], F_DUPFD, 0);
		break;
	case CRD__FILE_TYPE__FILE_UNIX:
		i = INDEX_OF(inv->unix_sks, inv->n_unix_sks, e->unix_id);
		if (i == inv->n_unix_sks)
			return missing(e, "UNIX socket", e->unix_id);
		fd = fcntl(skfds[i], F_DUPFD, 0);
		break;
	case CRD__FILE_TYPE__FILE_PIPE:
		for (i = 0; i < inv->n_pipes && pfs[i].id != e->pipe_id; i++)
			;
		if (i == inv->n_pipes)
			return missing(e, "pipe", e->pipe_id);
		fd = open_pipe_end(e, &pfs[i]);
		break;
	case CRD__FILE_TYPE__FILE_FIFO:
		fd = open_fifo(e, inv_pipe(inv, e->pipe_id), fr);
		break;
	case CRD__FILE_TYPE__FILE_EVENTFD:
	case CRD__FILE_TYPE__FILE_SIGNALFD:
	case CRD__FILE_TYPE__FILE_TIMERFD:
	case CRD__FILE_TYPE__FILE_EPOLL:
	case CRD__FILE_TYPE__FILE_INOTIFY:
		fd = create_anon_fd(e);
		if (fd < 0)
			pr_err("file %lu: can't create its %s: %s\n", e->id,
			       protobuf_c_enum_descriptor_get_value(&crd__file_type__descriptor,
								    e->type)->name, strerror(-fd));
		break;
	default:
		if (e->has_shmid) {
			fd = open_shmem_file(fr, e);
			break;
		}
		if (!e->path) {
			pr_err("file %lu: no path in the image\n", e->id);
			return -EINVAL;
		}
		fd = open_file(e);
	}
	if (fd < 0)
		return fd;
	/* O_NONBLOCK, O_APPEND, ... as they were */
	if (fcntl(fd, F_SETFL, e->flags) < 0)
		pr_warn("file %lu: can't set flags %#x: %s\n", e->id, e->flags, strerror(errno));
	fd = fdr_place(fr, fd);
	if (fd < 0)
		return fd;
	fr->objs[fr->n].id = e->id;
	fr->objs[fr->n++].fd = fd;
	return 0;
}

static int obj_fd(const struct fd_restore *fr, uint64_t id);

static int scm_file_fd(void *arg, uint64_t id)
{
	return obj_fd(arg, id);
}

int fdr_prepare(const Crd__Inventory *inv, int base, bool shell_job,
		int (*shmem_fd)(const void *arg, uint64_t id), const void *arg,
		struct fd_restore **out)
{
	struct fd_restore *fr = calloc(1, sizeof(*fr));
	struct pipe_fds *pfs = calloc(inv->n_pipes + 1, sizeof(*pfs));
	int *skfds = calloc(inv->n_unix_sks + 1, sizeof(int));
	int *tcpfds = calloc(inv->n_tcp_sks + 1, sizeof(int));
	size_t i;
	int ret = 0;

	if (!fr || !pfs || !skfds || !tcpfds) {
		free(tcpfds);
		free(skfds);
		free(pfs);
		free(fr);
		return -ENOMEM;
	}
	fr->next = base;
	fr->inv = inv;
	fr->shell_job = shell_job;
	fr->shmem_fd = shmem_fd;
	fr->shmem_arg = arg;
	fr->objs = calloc(inv->n_files + 1, sizeof(*fr->objs));
	fr->fifos_filled = calloc(inv->n_files + 1, sizeof(*fr->fifos_filled));
	if (!fr->objs || !fr->fifos_filled)
		ret = -ENOMEM;
	for (i = 0; !ret && i < inv->n_pipes; i++)
		ret = prepare_pipe(fr, inv->pipes[i], &pfs[i]);
	if (!ret)
		ret = restore_unix_sks(inv->unix_sks, inv->n_unix_sks, skfds);
	if (!ret)
		ret = restore_tcp_sks(inv->tcp_sks, inv->n_tcp_sks, tcpfds);
	if (!ret) {
		fr->tty = tty_restore_new(inv, fr->shell_job);
		if (!fr->tty)
			ret = -EIO;
	}
	for (i = 0; !ret && i < inv->n_files; i++)
		ret = prepare_one(inv, inv->files[i], fr, pfs, skfds, tcpfds);
	if (!ret)
		ret = unix_refill_scm(inv->unix_sks, inv->n_unix_sks, skfds, scm_file_fd, fr);
	for (i = 0; i < inv->n_unix_sks; i++)
		if (skfds[i] >= 0)
			close(skfds[i]);
	for (i = 0; i < inv->n_tcp_sks; i++)
		if (tcpfds[i] >= 0)
			close(tcpfds[i]);
	free(tcpfds);
	free(skfds);
	free(pfs);
	if (ret) {
		close_range(base, ~0U, 0);
		fdr_free(fr);
		return ret;
	}
	*out = fr;
	return 0;
}

int fdr_end(const struct fd_restore *fr)
{
	return fr->next;
}

static int obj_fd(const struct fd_restore *fr, uint64_t id)
{
	size_t i;

	for (i = 0; i < fr->n; i++)
		if (fr->objs[i].id == id)
			return fr->objs[i].fd;
	return -1;
}


static const Crd__FileEntry *inv_file(const Crd__Inventory *inv, uint64_t id)
{
	size_t i;

	for (i = 0; i < inv->n_files; i++)
		if (inv->files[i]->id == id)
			return inv->files[i];
	return NULL;
}

/* Epoll targets are fd numbers of one process: registered there, once its fds are in place. */
static int install_epoll_targets(const struct fd_restore *fr, const Crd__TaskEntry *te)
{
	size_t i;
	int ret;

	for (i = 0; i < te->n_fds; i++) {
		const Crd__FileEntry *e = inv_file(fr->inv, te->fds[i]->file_id);

		if (!e || e->type != CRD__FILE_TYPE__FILE_EPOLL || !e->has_epoll_owner ||
		    e->epoll_owner != te->pid)
			continue;
		ret = restore_epoll_targets(e, te->fds[i]->fd, te->pid);
		if (ret)
			return ret;
	}
	return 0;
}

int fdr_install(const struct fd_restore *fr, const Crd__TaskEntry *te, int base)
{
	size_t i;
	int fd;

	for (i = 0; i < te->n_fds; i++) {
		const Crd__FdEntry *fe = te->fds[i];
		int src = obj_fd(fr, fe->file_id);

		if (src < 0 || fe->fd < 0 || fe->fd >= base) {
			pr_err("pid %u fd %d: bad file reference %lu\n", te->pid, fe->fd,
			       fe->file_id);
			return -EINVAL;
		}
		if (dup2(src, fe->fd) < 0 ||
		    fcntl(fe->fd, F_SETFD, fe->cloexec ? FD_CLOEXEC : 0) < 0) {
			int ret = -errno;

			pr_perror("pid %u fd %d: can't install", te->pid, fe->fd);
			return ret;
		}
	}
	for (fd = 0; fd < base; fd++) {
		for (i = 0; i < te->n_fds && te->fds[i]->fd != fd; i++)
			;
		if (i == te->n_fds)
			close(fd);
	}
	return install_epoll_targets(fr, te);
}

void fdr_free(struct fd_restore *fr)
{
	if (!fr)
		return;
	tty_restore_free(fr->tty);
	free(fr->objs);
	free(fr->fifos_filled);
	free(fr);
}
