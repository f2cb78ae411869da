/*
 * Freezing a process tree: every thread of every process is seized and put in
 * a ptrace interrupt stop.  The tree is re-scanned until a pass finds no new
 * task, so a task forked or a thread cloned while we were seizing is caught:
 * once all are stopped nothing can fork any more.  With the cgroup freezer the
 * tree is frozen first, so the scan is stable from the start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cr-dump.h"
#include "log.h"
#include "util.h"

#define FREEZER_ROOT	"/sys/fs/cgroup/freezer"

static struct dtask *find_task(struct dump_ctx *ctx, pid_t pid)
{
	size_t i;

	for (i = 0; i < ctx->nr_tasks; i++)
		if (ctx->tasks[i].pid == pid)
			return &ctx->tasks[i];
	return NULL;
}

/* Field 52 of /proc/PID/stat: the wait status of a zombie. */
static int zombie_status(pid_t pid)
{
	char path[64], *buf, *p, *save;
	int i, status = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_file(path, &buf) < 0)
		return 0;
	p = strrchr(buf, ')');
	for (i = 3, p = p ? strtok_r(p + 2, " ", &save) : NULL; p; p = strtok_r(NULL, " ", &save))
		if (i++ == 52)
			status = atoi(p);
	free(buf);
	return status;
}

static int add_task(struct dump_ctx *ctx, pid_t pid, pid_t ppid)
{
	char path[64], *stat, *p;
	struct dtask *t;

	if (arena_grow(&ctx->arena, (void **)&ctx->tasks, &ctx->cap_tasks, ctx->nr_tasks + 1,
		       sizeof(*t)))
		return -ENOMEM;
	t = &ctx->tasks[ctx->nr_tasks++];
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->ppid = ppid;
	/* a zombie can't be seized; it is restored as a child that exits again */
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_file(path, &stat) >= 0) {
		p = strrchr(stat, ')');
		t->zombie = p && p[1] == ' ' && p[2] == 'Z';
		t->stopped = p && p[1] == ' ' && p[2] == 'T';
		free(stat);
	}
	if (t->zombie)
		t->exit_status = zombie_status(pid);
	return 0;
}

static struct dthread *find_thread(struct dtask *t, pid_t tid)
{
	size_t i;

	for (i = 0; i < t->nr_threads; i++)
		if (t->threads[i].tid == tid)
			return &t->threads[i];
	return NULL;
}

static int add_thread(struct dump_ctx *ctx, struct dtask *t, pid_t tid)
{
	struct dthread *th;

	if (arena_grow(&ctx->arena, (void **)&t->threads, &t->cap_threads, t->nr_threads + 1,
		       sizeof(*th)))
		return -ENOMEM;
	th = &t->threads[t->nr_threads++];
	memset(th, 0, sizeof(*th));
	th->tid = tid;
	return 0;
}

/* Wait for the interrupt stop of a seized thread. */
static int wait_stop(struct dthread *th)
{
	int status;

	for (;;) {
		if (waitpid(th->tid, &status, __WALL) < 0) {
			int ret = -errno;

			pr_perror("tid %d: wait for stop failed", th->tid);
			return ret;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			pr_err("tid %d exited while being frozen\n", th->tid);
			return -ESRCH;
		}
		if (!WIFSTOPPED(status))
			continue;
		if (status >> 16 == PTRACE_EVENT_STOP)
			break;
		/*
		 * A signal-delivery-stop: the signal is already dequeued.  Keep
		 * it: it goes back with the detach, and into the image as
		 * pending.  Then ask for the interrupt stop again.
		 */
		if (WSTOPSIG(status) == SIGCONT)
			;	/* ours (unstop_task): it did its work when it was sent */
		else if (th->stop_sig)
			pr_warn("tid %d: second signal %d while freezing is dropped\n", th->tid,
				WSTOPSIG(status));
		else if (!ptrace(PTRACE_GETSIGINFO, th->tid, 0, th->stop_si))
			th->stop_sig = WSTOPSIG(status);
		if (ptrace(PTRACE_INTERRUPT, th->tid, 0, 0) ||
		    ptrace(PTRACE_CONT, th->tid, 0, 0)) {
			int ret = -errno;

			pr_perror("tid %d: can't re-interrupt", th->tid);
			return ret;
		}
	}
	th->stopped = true;
	return 0;
}

static int seize_thread(struct dthread *th, bool wait)
{
	if (ptrace(PTRACE_SEIZE, th->tid, 0, 0)) {
		int ret = -errno;

		if (ret != -ESRCH)
			pr_perror("tid %d: can't seize", th->tid);
		return ret;
	}
	th->seized = true;
	if (ptrace(PTRACE_INTERRUPT, th->tid, 0, 0)) {
		int ret = -errno;

		pr_perror("tid %d: can't interrupt", th->tid);
		return ret;
	}
	return wait ? wait_stop(th) : 0;
}

static int proc_stat_ids(pid_t pid, char *state, pid_t *ppid, pid_t *pgid, pid_t *sid)
{
	char path[64], *buf, *p;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	ret = read_file(path, &buf);
	if (ret < 0)
		return ret;
	p = strrchr(buf, ')');
	ret = (p && sscanf(p + 1, " %c %d %d %d", state, ppid, pgid, sid) == 4) ? 0 : -EINVAL;
	free(buf);
	return ret;
}

/* Seize new threads of t; *found is set when there were any. */
static int scan_threads(struct dump_ctx *ctx, struct dtask *t, bool wait, bool *found)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int ret = 0;

	if (t->zombie)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task", t->pid);
	d = opendir(path);
	if (!d) {
		ret = -errno;
		pr_perror("pid %d: can't list threads", t->pid);
		return ret;
	}
	while (!ret && (de = readdir(d))) {
		long tid;

		if (parse_int(de->d_name, &tid) || find_thread(t, tid))
			continue;
		ret = add_thread(ctx, t, tid);
		if (ret)
			break;
		ret = seize_thread(&t->threads[t->nr_threads - 1], wait);
		if (ret == -ESRCH) {	/* exited meanwhile */
			t->nr_threads--;
			ret = 0;
			continue;
		}
		*found = true;
	}
	closedir(d);
	return ret;
}

/* Add children of t not known yet; *found is set when there were any. */
static int scan_children(struct dump_ctx *ctx, size_t ti, bool *found)
{
	size_t i;

	for (i = 0; i < ctx->tasks[ti].nr_threads; i++) {
		char path[96], *buf, *p, *end;
		pid_t tid = ctx->tasks[ti].threads[i].tid;
		pid_t pid = ctx->tasks[ti].pid;
		int ret;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, tid);
		ret = read_file(path, &buf);
		if (ret < 0) {
			pr_err("pid %d: can't read %s: %s\n", pid, path, strerror(-ret));
			return ret;
		}
		for (p = buf; *p; p = end) {
			long child = strtol(p, &end, 10);

			if (end == p)
				break;
			if (find_task(ctx, child))
				continue;
			ret = add_task(ctx, child, pid);
			if (ret) {
				free(buf);
				return ret;
			}
			*found = true;
		}
		free(buf);
	}
	return 0;
}

static int scan_tree(struct dump_ctx *ctx, bool wait)
{
	bool found;
	size_t i;
	int ret;

	do {
		found = false;
		for (i = 0; i < ctx->nr_tasks; i++) {
			ret = scan_threads(ctx, &ctx->tasks[i], wait, &found);
			if (ret)
				return ret;
			if (!ctx->tasks[i].nr_threads && !ctx->tasks[i].zombie) {
				pr_err("pid %d exited while being frozen\n", ctx->tasks[i].pid);
				return -ESRCH;
			}
		}
		for (i = 0; i < ctx->nr_tasks; i++) {
			ret = scan_children(ctx, i, &found);
			if (ret)
				return ret;
		}
	} while (found);
	return 0;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int freezer_path_of(pid_t pid, char *buf, size_t len)
{
	char path[64], *data, *p;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	ret = read_file(path, &data);
	if (ret < 0)
		return ret;
	ret = -ENOENT;
	for (p = strtok(data, "\n"); p; p = strtok(NULL, "\n")) {
		char *c = strstr(p, ":freezer:");

		if (c) {
			snprintf(buf, len, "%s", c + strlen(":freezer:"));
			ret = 0;
			break;
		}
	}
	free(data);
	return ret;
}

static int freezer_move(const char *cgroup, pid_t tid)
{
	char path[512], s[32];

	snprintf(path, sizeof(path), FREEZER_ROOT "%s/tasks", cgroup);
	snprintf(s, sizeof(s), "%d", tid);
	return write_str(path, s);
}

static int freezer_state(const char *cgroup, const char *state)
{
	char path[512], *cur;
	int i, ret;

	snprintf(path, sizeof(path), FREEZER_ROOT "%s/freezer.state", cgroup);
	ret = write_str(path, state);
	if (ret)
		return ret;
	/* FREEZING turns into FROZEN once every task has stopped */
	for (i = 0; i < 5000; i++) {
		ret = read_file(path, &cur);
		if (ret < 0)
			return ret;
		ret = strncmp(cur, state, strlen(state));
		free(cur);
		if (!ret)
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

/* Move every thread of the tree into our freezer cgroup, repeatedly until stable. */
static int freezer_collect(struct dump_ctx *ctx)
{
	size_t i, j, moved;
	int ret;

	do {
		bool found = false;

		moved = 0;
		for (i = 0; i < ctx->nr_tasks; i++) {
			struct dtask *t = &ctx->tasks[i];
			char path[64];
			struct dirent *de;
			DIR *d;

			if (t->zombie)
				continue;
			if (!t->orig_freezer[0] &&
			    freezer_path_of(t->pid, t->orig_freezer, sizeof(t->orig_freezer))) {
				pr_err("pid %d: no freezer cgroup (is cgroup v1 freezer mounted?)\n",
				       t->pid);
				return -ENOENT;
			}
			snprintf(path, sizeof(path), "/proc/%d/task", t->pid);
			d = opendir(path);
			if (!d)
				return -errno;
			while ((de = readdir(d))) {
				long tid;

				if (parse_int(de->d_name, &tid) || find_thread(t, tid))
					continue;
				if (add_thread(ctx, t, tid) || freezer_move(ctx->cgroup, tid)) {
					closedir(d);
					pr_err("tid %ld: can't move into %s\n", tid, ctx->cgroup);
					return -EIO;
				}
				moved++;
			}
			closedir(d);
		}
		for (i = 0; i < ctx->nr_tasks; i++) {
			ret = scan_children(ctx, i, &found);
			if (ret)
				return ret;
		}
		ret = freezer_state(ctx->cgroup, "FROZEN");
		if (ret) {
			pr_err("%s: can't freeze: %s\n", ctx->cgroup, strerror(-ret));
			return ret;
		}
		if (found)
			moved++;
	} while (moved);
	/* the tree is frozen and complete: seize everything, then thaw to get the stops */
	for (i = 0; i < ctx->nr_tasks; i++)
		for (j = 0; j < ctx->tasks[i].nr_threads; j++) {
			ret = seize_thread(&ctx->tasks[i].threads[j], false);
			if (ret)
				return ret;
		}
	ret = freezer_state(ctx->cgroup, "THAWED");
	if (ret)
		return ret;
	for (i = 0; i < ctx->nr_tasks; i++)
		for (j = 0; j < ctx->tasks[i].nr_threads; j++) {
			ret = wait_stop(&ctx->tasks[i].threads[j]);
			if (ret)
				return ret;
		}
	return 0;
}

/* Move the tree back where it was and remove our cgroup. */
static void freezer_cleanup(struct dump_ctx *ctx)
{
	char path[512];
	size_t i, j;

	if (!ctx->cgroup[0])
		return;
	freezer_state(ctx->cgroup, "THAWED");
	for (i = 0; i < ctx->nr_tasks; i++)
		for (j = 0; j < ctx->tasks[i].nr_threads; j++)
			if (ctx->tasks[i].orig_freezer[0])
				freezer_move(ctx->tasks[i].orig_freezer, ctx->tasks[i].threads[j].tid);
	snprintf(path, sizeof(path), FREEZER_ROOT "%s", ctx->cgroup);
	if (rmdir(path))
		pr_perror("can't remove freezer cgroup %s", path);
	ctx->cgroup[0] = '\0';
}

/*
 * A task in a job-control stop can't run the syscalls we inject: continue
 * it under ptrace (its SIGCONT is swallowed) and stop it again on release
 * or after restore.
 */
static int unstop_task(struct dtask *t)
{
	size_t i;
	int ret;

	if (kill(t->pid, SIGCONT)) {
		ret = -errno;
		pr_perror("pid %d: can't continue it", t->pid);
		return ret;
	}
	for (i = 0; i < t->nr_threads; i++) {
		struct dthread *th = &t->threads[i];

		if (ptrace(PTRACE_INTERRUPT, th->tid, 0, 0) || ptrace(PTRACE_CONT, th->tid, 0, 0)) {
			ret = -errno;
			pr_perror("tid %d: can't resume it from its stop", th->tid);
			return ret;
		}
		ret = wait_stop(th);
		if (ret)
			return ret;
	}
	return 0;
}

static int check_tasks(struct dump_ctx *ctx)
{
	size_t i;

	for (i = 0; i < ctx->nr_tasks; i++) {
		struct dtask *t = &ctx->tasks[i];
		pid_t ppid;
		char state;
		int ret;

		ret = proc_stat_ids(t->pid, &state, &ppid, &t->pgid, &t->sid);
		if (ret) {
			pr_err("pid %d: can't read its stat: %s\n", t->pid, strerror(-ret));
			return ret;
		}
		if (state == 'Z' && !t->zombie) {
			pr_err("pid %d exited while being frozen\n", t->pid);
			return -ESRCH;
		}
		if (t->stopped) {
			ret = unstop_task(t);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int freeze_tree(struct dump_ctx *ctx)
{
	int ret;

	if (kill(ctx->opts->pid, 0)) {
		ret = -errno;
		if (ret == -ESRCH)
			pr_err("pid %d: no such process\n", ctx->opts->pid);
		else
			pr_perror("pid %d: can't signal", ctx->opts->pid);
		return ret;
	}
	if (ctx->opts->pid == getpid()) {
		pr_err("pid %d: crd can't dump itself\n", ctx->opts->pid);
		return -EINVAL;
	}
	ret = add_task(ctx, ctx->opts->pid, 0);
	if (ret)
		return ret;
	if (ctx->opts->freezer == FREEZER_CGROUP) {
		char path[512];

		snprintf(ctx->cgroup, sizeof(ctx->cgroup), "/crd-%d", getpid());
		snprintf(path, sizeof(path), FREEZER_ROOT "%s", ctx->cgroup);
		if (mkdir(path, 0700)) {
			ret = -errno;
			pr_perror("can't create freezer cgroup %s", path);
			ctx->cgroup[0] = '\0';
			return ret;
		}
		ret = freezer_collect(ctx);
		freezer_cleanup(ctx);
		if (ret)
			return ret;
	} else {
		ret = scan_tree(ctx, true);
		if (ret)
			return ret;
	}
	return check_tasks(ctx);
}

void release_tree(struct dump_ctx *ctx, bool kill_tree)
{
	size_t i, j;

	freezer_cleanup(ctx);
	if (kill_tree)
		for (i = 0; i < ctx->nr_tasks; i++)
			kill(ctx->tasks[i].pid, SIGKILL);
	for (i = 0; i < ctx->nr_tasks; i++) {
		struct dtask *t = &ctx->tasks[i];

		for (j = 0; j < t->nr_threads; j++) {
			struct dthread *th = &t->threads[j];

			if (!th->seized)
				continue;
			if (!kill_tree && th->regs_valid) {
				if (ptrace(PTRACE_SETREGS, th->tid, 0, &th->regs))
					pr_perror("tid %d: can't restore registers", th->tid);
				if (ptrace(PTRACE_SETSIGMASK, th->tid, sizeof(th->sigmask),
					   &th->sigmask))
					pr_perror("tid %d: can't restore the signal mask", th->tid);
			}
			/* a signal caught while freezing is queued again (as a tkill) */
			if (!kill_tree && th->stop_sig)
				syscall(SYS_tgkill, t->pid, th->tid, th->stop_sig);
			if (ptrace(PTRACE_DETACH, th->tid, 0, 0) && errno != ESRCH)
				pr_perror("tid %d: can't detach", th->tid);
			th->seized = false;
		}
		if (!kill_tree && t->stopped)
			kill(t->pid, SIGSTOP);
	}
}
