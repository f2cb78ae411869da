/*
 * Anonymous-inode fds: eventfd, signalfd, timerfd and epoll.  /proc/PID/fdinfo
 * tells all their state; restore creates each anew in the orchestrator, and
 * an epoll instance gets its targets back in the process that owned them,
 * once that process has its fds (files.h: fdr_install).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "files-anon.h"
#include "log.h"
#include "util.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS	_IOW('T', 0, uint64_t)
#endif

static const char *field(const char *info, const char *key)
{
	const char *p = strstr(info, key);

	return p ? p + strlen(key) : NULL;
}

static int dump_timerfd(struct arena *a, const char *info, Crd__FileEntry *e)
{
	Crd__TimerfdEntry *t = arena_alloc(a, sizeof(*t));
	const char *clk = field(info, "clockid:"), *ticks = field(info, "ticks:");
	const char *fl = field(info, "settime flags:"), *val = field(info, "it_value:");
	const char *iv = field(info, "it_interval:");
	unsigned long long vs, vn, is, in;

	if (!t)
		return -ENOMEM;
	if (!clk || !ticks || !fl || !val || !iv ||
	    sscanf(val, " (%llu, %llu)", &vs, &vn) != 2 ||
	    sscanf(iv, " (%llu, %llu)", &is, &in) != 2)
		return -EINVAL;
	crd__timerfd_entry__init(t);
	t->clockid = strtol(clk, NULL, 10);
	t->ticks = strtoull(ticks, NULL, 10);
	t->settime_flags = strtoul(fl, NULL, 8);
	t->value_ns = vs * 1000000000ULL + vn;
	t->interval_ns = is * 1000000000ULL + in;
	e->timerfd = t;
	return 0;
}

static int dump_epoll(struct arena *a, const char *info, pid_t pid, Crd__FileEntry *e)
{
	const char *p;
	size_t cap = 0;

	e->has_epoll_owner = true;
	e->epoll_owner = pid;
	for (p = strstr(info, "tfd:"); p; p = strstr(p + 1, "tfd:")) {
		Crd__EpollTarget *t = arena_alloc(a, sizeof(*t));
		unsigned int events;
		uint64_t data;
		int fd;

		if (!t || arena_grow(a, (void **)&e->epoll_targets, &cap, e->n_epoll_targets + 1,
				     sizeof(*e->epoll_targets)))
			return -ENOMEM;
		if (sscanf(p, "tfd: %d events: %x data: %" SCNx64, &fd, &events, &data) != 3)
			return -EINVAL;
		crd__epoll_target__init(t);
		t->fd = fd;
		t->events = events;
		t->data = data;
		e->epoll_targets[e->n_epoll_targets++] = t;
	}
	return 0;
}

/* A mount of the filesystem with device dev (kernel encoding), for open_by_handle_at(). */
static int mount_fd_of(unsigned long dev)
{
	unsigned int major = dev >> 20, minor = dev & 0xfffff, ma, mi;
	char *buf, *line, *save, root[PATH_MAX], mnt[PATH_MAX];
	int fd = -ENOENT;

	if (read_file("/proc/self/mountinfo", &buf) < 0)
		return -EIO;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%*d %*d %u:%u %4095s %4095s", &ma, &mi, root, mnt) != 4 ||
		    ma != major || mi != minor || strcmp(root, "/"))
			continue;
		/* open_by_handle_at() refuses an O_PATH mount fd */
		fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		break;
	}
	free(buf);
	return fd;
}

/* The path of the file a watch is on, from its file handle. */
static char *watch_path(struct arena *a, unsigned long dev, unsigned int bytes, int type,
			const char *hex)
{
	struct file_handle *fh = calloc(1, sizeof(*fh) + bytes);
	char link[64], path[PATH_MAX], *ret = NULL;
	int mfd, fd = -1;
	unsigned int i;
	ssize_t n;

	if (!fh)
		return NULL;
	fh->handle_bytes = bytes;
	fh->handle_type = type;
	for (i = 0; i < bytes && sscanf(hex + 2 * i, "%2hhx", &fh->f_handle[i]) == 1; i++)
		;
	mfd = mount_fd_of(dev);
	if (mfd >= 0 && i == bytes)
		fd = open_by_handle_at(mfd, fh, O_PATH | O_CLOEXEC);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (fd >= 0 && (n = readlink(link, path, sizeof(path) - 1)) > 0) {
		path[n] = '\0';
		ret = arena_strdup(a, path);
	}
	if (fd >= 0)
		close(fd);
	if (mfd >= 0)
		close(mfd);
	free(fh);
	return ret;
}

static int dump_inotify(struct arena *a, const char *info, pid_t pid, int fd, Crd__FileEntry *e)
{
	const char *p;
	size_t cap = 0;

	for (p = strstr(info, "inotify wd:"); p; p = strstr(p + 1, "inotify wd:")) {
		Crd__InotifyWatch *w = arena_alloc(a, sizeof(*w));
		unsigned int wd, mask, bytes;
		unsigned long ino, dev;
		char hex[260];
		int type;

		if (!w || arena_grow(a, (void **)&e->watches, &cap, e->n_watches + 1,
				     sizeof(*e->watches)))
			return -ENOMEM;
		if (sscanf(p, "inotify wd:%x ino:%lx sdev:%lx mask:%x ignored_mask:%*x "
			   "fhandle-bytes:%x fhandle-type:%x f_handle:%259s", &wd, &ino, &dev, &mask,
			   &bytes, &type, hex) != 7)
			return -EINVAL;
		crd__inotify_watch__init(w);
		w->wd = wd;
		w->mask = mask;
		w->path = watch_path(a, dev, bytes, type, hex);
		if (!w->path) {
			pr_err("pid %d fd %d: can't find the file of inotify watch %u (inode %lu)\n",
			       pid, fd, wd, ino);
			return -ENOENT;
		}
		e->watches[e->n_watches++] = w;
	}
	return 0;
}

int dump_anon_fd(struct arena *a, pid_t pid, int fd, const char *link, const char *info,
		 Crd__FileEntry *e)
{
	const char *v;
	int ret = 0;

	if (!strcmp(link, "anon_inode:[eventfd]")) {
		e->type = CRD__FILE_TYPE__FILE_EVENTFD;
		v = field(info, "eventfd-count:");
		e->has_eventfd_count = e->has_eventfd_semaphore = true;
		e->eventfd_count = v ? strtoull(v, NULL, 10) : 0;
		v = field(info, "eventfd-semaphore:");
		e->eventfd_semaphore = v && strtoul(v, NULL, 10);
	} else if (!strcmp(link, "anon_inode:[signalfd]")) {
		e->type = CRD__FILE_TYPE__FILE_SIGNALFD;
		v = field(info, "sigmask:");
		e->has_signalfd_mask = true;
		e->signalfd_mask = v ? strtoull(v, NULL, 16) : 0;
	} else if (!strcmp(link, "anon_inode:[timerfd]")) {
		e->type = CRD__FILE_TYPE__FILE_TIMERFD;
		ret = dump_timerfd(a, info, e);
	} else if (!strcmp(link, "anon_inode:inotify")) {
		e->type = CRD__FILE_TYPE__FILE_INOTIFY;
		ret = dump_inotify(a, info, pid, fd, e);
	} else if (!strcmp(link, "anon_inode:[eventpoll]")) {
		e->type = CRD__FILE_TYPE__FILE_EPOLL;
		ret = dump_epoll(a, info, pid, e);
	} else {
		pr_err("pid %d fd %d: unsupported file type %s\n", pid, fd, link);
		return -ENOTSUP;
	}
	if (ret == -EINVAL)
		pr_err("pid %d fd %d: can't parse the fdinfo of %s\n", pid, fd, link);
	return ret;
}

static int create_timerfd(const Crd__TimerfdEntry *t)
{
	struct itimerspec its = {
		.it_interval = { t->interval_ns / 1000000000, t->interval_ns % 1000000000 },
		.it_value = { t->value_ns / 1000000000, t->value_ns % 1000000000 },
	};
	uint64_t ticks = t->ticks;
	int fd = timerfd_create(t->clockid, 0);

	if (fd < 0)
		return -errno;
	/* a periodic timer whose expiry is pending shows no time left: next one in a period */
	if (!t->value_ns && t->interval_ns)
		its.it_value = its.it_interval;
	if ((its.it_value.tv_sec || its.it_value.tv_nsec) && timerfd_settime(fd, 0, &its, NULL))
		goto fail;
	if (ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks))
		goto fail;
	return fd;
fail:
	close(fd);
	return -errno;
}

static int cmp_wd(const void *a, const void *b)
{
	return (*(Crd__InotifyWatch *const *)a)->wd - (*(Crd__InotifyWatch *const *)b)->wd;
}

/*
 * Watches get their descriptors in increasing order: add them in the order of
 * their dumped wd, and add-and-remove a watch until the kernel's next number
 * is the one wanted.
 */
static int create_inotify(const Crd__FileEntry *e)
{
	Crd__InotifyWatch **w = malloc((e->n_watches + 1) * sizeof(*w));
	int fd = inotify_init1(0), wd = 0;
	size_t i;

	if (fd < 0 || !w) {
		free(w);
		return fd < 0 ? -errno : -ENOMEM;
	}
	memcpy(w, e->watches, e->n_watches * sizeof(*w));
	qsort(w, e->n_watches, sizeof(*w), cmp_wd);
	for (i = 0; i < e->n_watches; i++) {
		for (;;) {
			wd = inotify_add_watch(fd, w[i]->path, w[i]->mask);
			if (wd < 0 || wd >= w[i]->wd)
				break;
			inotify_rm_watch(fd, wd);
		}
		if (wd != w[i]->wd) {
			pr_err("inotify watch %d on %s: got %d: %s\n", w[i]->wd, w[i]->path, wd,
			       wd < 0 ? strerror(errno) : "another descriptor");
			free(w);
			close(fd);
			return wd < 0 ? -errno : -EINVAL;
		}
	}
	free(w);
	/* the watches removed on the way queued IN_IGNORED events: drop them */
	if (!fcntl(fd, F_SETFL, O_NONBLOCK)) {
		char buf[4096];

		while (read(fd, buf, sizeof(buf)) > 0)
			;
	}
	return fd;
}

int create_anon_fd(const Crd__FileEntry *e)
{
	sigset_t mask;
	int fd = -EINVAL;

	switch (e->type) {
	case CRD__FILE_TYPE__FILE_EVENTFD:
		fd = eventfd(e->eventfd_count, e->eventfd_semaphore ? EFD_SEMAPHORE : 0);
		break;
	case CRD__FILE_TYPE__FILE_SIGNALFD:
		sigemptyset(&mask);
		memcpy(&mask, &e->signalfd_mask, sizeof(e->signalfd_mask));
		fd = signalfd(-1, &mask, 0);
		break;
	case CRD__FILE_TYPE__FILE_TIMERFD:
		if (e->timerfd)
			return create_timerfd(e->timerfd);
		break;
	case CRD__FILE_TYPE__FILE_EPOLL:
		fd = epoll_create1(0);
		break;
	case CRD__FILE_TYPE__FILE_INOTIFY:
		return create_inotify(e);
	default:
		break;
	}
	if (fd == -1)
		fd = -errno;
	return fd;
}

int restore_epoll_targets(const Crd__FileEntry *e, int epfd, uint32_t pid)
{
	size_t i;

	for (i = 0; i < e->n_epoll_targets; i++) {
		const Crd__EpollTarget *t = e->epoll_targets[i];
		struct epoll_event ev = { .events = t->events, .data.u64 = t->data };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, t->fd, &ev)) {
			int ret = -errno;

			pr_perror("pid %u: can't add fd %d to its epoll fd %d", pid, t->fd, epfd);
			return ret;
		}
	}
	return 0;
}
