/*
 * Children: crd dumps, restores and net-unlocks, each with a callback at its
 * end.  The agent is a child subreaper, so restored trees (crd restore
 * --detach leaves them) and orphans of dumped trees come here too: every
 * child is reaped, those without a callback silently.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

struct child {
	struct child *next;
	pid_t pid;
	child_done_cb done;
	void *arg;
};

/* in the child: fds 0-2, the hook's fd as 3, nothing else; default signals */
static void child_exec(char *const argv[], const struct spawn_opts *o)
{
	int null = open("/dev/null", O_RDWR);
	sigset_t none;

	if (null < 0)
		_exit(127);
	/* dup2() onto itself would keep close-on-exec */
	if (o->hook_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 :
	    o->hook_fd >= 0 && dup2(o->hook_fd, 3) < 0)
		_exit(127);
	if (dup2(null, 0) < 0 || dup2(o->out_fd >= 0 ? o->out_fd : null, 1) < 0 ||
	    dup2(o->err_fd >= 0 ? o->err_fd : null, 2) < 0)
		_exit(127);
	close_range(o->hook_fd >= 0 ? 4 : 3, ~0U, 0);
	if (o->hook_fd >= 0)
		setenv("CRJOB_HOOK_FD", "3", 1);
	else
		unsetenv("CRJOB_HOOK_FD");
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], argv);
	dprintf(2, "crjob-agent: can't run %s: %m\n", argv[0]);
	_exit(127);
}

int child_spawn(struct agent *a, char *const argv[], const struct spawn_opts *o,
		child_done_cb done, void *arg, pid_t *pid)
{
	struct child *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->pid = fork();
	if (c->pid < 0) {
		ret = -errno;
		alog("can't fork for %s: %m\n", argv[0]);
		free(c);
		return ret;
	}
	if (c->pid == 0)
		child_exec(argv, o);
	c->done = done;
	c->arg = arg;
	c->next = a->children;
	a->children = c;
	*pid = c->pid;
	return 0;
}

void child_forget(struct agent *a, pid_t pid)
{
	struct child *c;

	for (c = a->children; c; c = c->next)
		if (c->pid == pid)
			c->done = NULL;
}

static struct child *child_take(struct agent *a, pid_t pid)
{
	struct child **p, *c;

	for (p = &a->children; *p; p = &(*p)->next)
		if ((*p)->pid == pid) {
			c = *p;
			*p = c->next;
			return c;
		}
	return NULL;
}

void child_reap(struct agent *a)
{
	struct child *c;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
		c = child_take(a, pid);
		if (!c) {
			/* an adopted orphan or a restored tree */
			job_root_ended(a, pid, status);
			continue;
		}
		if (c->done)
			c->done(a, pid, status, c->arg);
		free(c);
	}
}

int child_count(const struct agent *a)
{
	const struct child *c;
	int n = 0;

	for (c = a->children; c; c = c->next)
		n++;
	return n;
}
