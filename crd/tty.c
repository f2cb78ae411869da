/*
 * Pseudo-terminals with both ends in the tree (a launcher giving its
 * children ptys for their output, as Open MPI's mpirun does).  A restored
 * pair gets whatever number /dev/ptmx hands out; the slave's fds are opened
 * on the new number, and the pair gets its termios and window size back.
 * Data still in the pty's buffers is dropped with a warning: reading it would
 * take it away from the tree.  Controlling terminals are not restored yet:
 * a session of the tree that has one is restored without it, with a warning.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "tty.h"
#include "util.h"

int tty_is_pty(const char *path)
{
	return !strcmp(path, "/dev/ptmx") || !strncmp(path, "/dev/pts/", 9);
}

static int save(struct arena *a, ProtobufCBinaryData *b, const void *p, size_t len)
{
	b->data = arena_alloc(a, len);
	if (!b->data)
		return -ENOMEM;
	memcpy(b->data, p, len);
	b->len = len;
	return 0;
}

int dump_tty(struct arena *a, pid_t pid, int fd, const char *path, Crd__FileEntry *e)
{
	struct termios tio;
	struct winsize ws;
	char slave[32];
	int dup, idx = -1, queued = 0, ret = 0;

	e->type = CRD__FILE_TYPE__FILE_TTY;
	e->has_tty_index = e->has_tty_master = true;
	if (strcmp(path, "/dev/ptmx")) {
		e->tty_index = atoi(path + 9);
		return 0;
	}
	e->tty_master = true;
	dup = task_fd_dup(pid, fd);
	if (dup < 0 || ioctl(dup, TIOCGPTN, &idx)) {
		ret = dup < 0 ? dup : -errno;
		pr_err("pid %d fd %d: can't inspect the pty: %s\n", pid, fd, strerror(-ret));
		if (dup >= 0)
			close(dup);
		return ret;
	}
	if (!ioctl(dup, FIONREAD, &queued) && queued)
		pr_warn("pid %d fd %d: %d bytes of output in pty %d are dropped\n", pid, fd,
			queued, idx);
	close(dup);
	/* the line discipline's settings are the slave's */
	snprintf(slave, sizeof(slave), "/dev/pts/%d", idx);
	dup = open(slave, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (dup < 0 || ioctl(dup, TCGETS, &tio) || ioctl(dup, TIOCGWINSZ, &ws)) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't read the settings of %s", pid, fd, slave);
		if (dup >= 0)
			close(dup);
		return ret;
	}
	if (!ioctl(dup, FIONREAD, &queued) && queued)
		pr_warn("pid %d fd %d: %d bytes of input in %s are dropped\n", pid, fd, queued,
			slave);
	close(dup);
	e->tty_index = idx;
	e->has_termios = e->has_winsize = true;
	ret = save(a, &e->termios, &tio, sizeof(tio));
	if (!ret)
		ret = save(a, &e->winsize, &ws, sizeof(ws));
	return ret;
}

int tty_check_pairs(Crd__FileEntry **files, size_t n, bool shell_job)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		if (files[i]->type != CRD__FILE_TYPE__FILE_TTY || files[i]->tty_master)
			continue;
		for (j = 0; j < n; j++)
			if (files[j]->type == CRD__FILE_TYPE__FILE_TTY && files[j]->tty_master &&
			    files[j]->tty_index == files[i]->tty_index)
				break;
		if (j == n && shell_job) {
			files[i]->has_tty_external = files[i]->tty_external = true;
		} else if (j == n) {
			pr_err("terminal /dev/pts/%u: its master is outside the dumped tree (dump "
			       "with --shell-job if it is your terminal)\n", files[i]->tty_index);
			return -ENOTSUP;
		}
	}
	return 0;
}

struct tty_pair {
	uint32_t old_index;
	int master;		/* the new master, opened once */
	bool master_used;
	int new_index;
};

struct tty_restore {
	struct tty_pair *pairs;
	size_t n;
	int term;		/* our terminal, for the tree's external one; -1 if none */
};

static int new_pair(const Crd__FileEntry *e, struct tty_pair *p)
{
	char path[32];
	int unlock = 0, slave;

	p->old_index = e->tty_index;
	p->master = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	if (p->master < 0 || ioctl(p->master, TIOCSPTLCK, &unlock) ||
	    ioctl(p->master, TIOCGPTN, &p->new_index)) {
		pr_perror("pty %u: can't create a new pair", e->tty_index);
		return -errno;
	}
	snprintf(path, sizeof(path), "/dev/pts/%d", p->new_index);
	slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0 ||
	    (e->termios.len == sizeof(struct termios) && ioctl(slave, TCSETS, e->termios.data)) ||
	    (e->winsize.len == sizeof(struct winsize) &&
	     ioctl(slave, TIOCSWINSZ, e->winsize.data))) {
		pr_perror("pty %u: can't restore its settings on %s", e->tty_index, path);
		if (slave >= 0)
			close(slave);
		return -errno;
	}
	close(slave);
	return 0;
}

struct tty_restore *tty_restore_new(const Crd__Inventory *inv, bool shell_job)
{
	struct tty_restore *t = calloc(1, sizeof(*t));
	size_t i;

	if (!t)
		return NULL;
	t->term = -1;
	for (i = 0; i < inv->n_files; i++) {
		if (!inv->files[i]->has_tty_external || !inv->files[i]->tty_external)
			continue;
		if (!shell_job || !isatty(STDIN_FILENO)) {
			pr_err("the tree ran on a terminal: restore it with --shell-job from one\n");
			free(t);
			return NULL;
		}
		t->term = STDIN_FILENO;
		break;
	}
	t->pairs = calloc(inv->n_files + 1, sizeof(*t->pairs));
	if (!t->pairs) {
		free(t);
		return NULL;
	}
	for (i = 0; i < inv->n_files; i++) {
		const Crd__FileEntry *e = inv->files[i];

		if (e->type != CRD__FILE_TYPE__FILE_TTY || !e->tty_master)
			continue;
		if (new_pair(e, &t->pairs[t->n++])) {
			tty_restore_free(t);
			return NULL;
		}
	}
	return t;
}

int tty_open(struct tty_restore *t, const Crd__FileEntry *e)
{
	char path[64];
	size_t i;
	int fd;

	if (e->has_tty_external && e->tty_external) {
		/* a new description of our terminal: the tree's own flags */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", t->term);
		fd = open(path, (e->flags & O_ACCMODE) | O_NOCTTY);
		if (fd < 0)
			pr_perror("can't open our terminal for the tree");
		return fd < 0 ? -errno : fd;
	}
	for (i = 0; i < t->n && t->pairs[i].old_index != e->tty_index; i++)
		;
	if (i == t->n) {
		pr_err("terminal /dev/pts/%u: no master in the images\n", e->tty_index);
		return -EINVAL;
	}
	if (e->tty_master && !t->pairs[i].master_used) {
		t->pairs[i].master_used = true;
		return fcntl(t->pairs[i].master, F_DUPFD, 0);
	}
	if (e->tty_master)
		snprintf(path, sizeof(path), "/proc/self/fd/%d", t->pairs[i].master);
	else
		snprintf(path, sizeof(path), "/dev/pts/%d", t->pairs[i].new_index);
	fd = open(path, (e->flags & O_ACCMODE) | O_NOCTTY);
	if (fd < 0)
		pr_perror("terminal %s: can't open it", path);
	return fd < 0 ? -errno : fd;
}

void tty_restore_free(struct tty_restore *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++)
		if (t->pairs[i].master >= 0)
			close(t->pairs[i].master);
	free(t->pairs);
	free(t);
}

void tty_check_ctty(pid_t pid)
{
	unsigned int tty_nr = 0;
	char path[64], *buf, *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_file(path, &buf) < 0)
		return;
	/* after "(comm)": state ppid pgrp session tty_nr */
	p = strrchr(buf, ')');
	if (p && sscanf(p + 1, " %*c %*d %*d %*d %u", &tty_nr) == 1 && tty_nr)
		pr_warn("pid %d leads a session with a controlling terminal (%u:%u): the "
			"restored session will have none\n", pid, (tty_nr >> 8) & 0xfff,
			(tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00));
	free(buf);
}
