/*
 * crjob-agent: the node agent daemon (docs/distributed.md).  Runs in the
 * foreground as root, a child subreaper that reaps everything; SIGTERM or
 * SIGINT let every held tree go (its crd releases it) and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "agent.h"
#include "hook.h"

/* how long an exit waits for the crd children it let go */
#define EXIT_WAIT_S	30

static int is_exec(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode) && !access(path, X_OK);
}

/* --crd, else next to the agent (build tree or sbin), else in $PATH */
static int find_crd(struct agent *a)
{
	char dir[2048], *slash, *path, *save = NULL, *p;

	if (a->conf.crd) {
		snprintf(a->crd, sizeof(a->crd), "%s", a->conf.crd);
		goto check;
	}
	memcpy(dir, a->self, sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	snprintf(a->crd, sizeof(a->crd), "%s/../crd/crd", dir);
	if (is_exec(a->crd))
		return 0;
	snprintf(a->crd, sizeof(a->crd), "%s/crd", dir);
	if (is_exec(a->crd))
		return 0;
	path = strdup(getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin");
	for (p = path ? strtok_r(path, ":", &save) : NULL; p; p = strtok_r(NULL, ":", &save)) {
		snprintf(a->crd, sizeof(a->crd), "%s/crd", p);
		if (is_exec(a->crd)) {
			free(path);
			return 0;
		}
	}
	free(path);
	snprintf(a->crd, sizeof(a->crd), "crd");
check:
	if (is_exec(a->crd))
		return 0;
	alog("no crd at %s: give its path with --crd or `crd =` in the config\n", a->crd);
	return -ENOENT;
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;

	child_reap(a);
	if (a->exiting && !child_count(a))
		event_base_loopbreak(a->base);
}

static void exit_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;

	alog("%d children still run after %d s; exiting anyway\n", child_count(a),
	     EXIT_WAIT_S);
	event_base_loopbreak(a->base);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = { EXIT_WAIT_S, 0 };
	struct agent *a = arg;
	struct job *j;
	int i;

	if (a->exiting)
		return;
	a->exiting = true;
	alog("signal %d: letting every held tree go, then exiting\n", (int)sig);
	rpc_listener_free(a->listener);
	a->listener = NULL;
	for (j = a->jobs; j; j = j->next) {
		j->conn = NULL;
		for (i = 0; i < j->ntrees; i++)
			tree_answer(&j->trees[i], false);
	}
	if (!child_count(a)) {
		event_base_loopbreak(a->base);
		return;
	}
	event_base_once(a->base, -1, EV_TIMEOUT, exit_timeout, a, &tv);
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd, len;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		alog("can't write the pid file %s: %m\n", path);
		return -errno;
	}
	len = snprintf(buf, sizeof(buf), "%d\n", getpid());
	if (write(fd, buf, len) != len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* the trees of jobs that ended on this node go with them (slurm-cg.c) */
static const struct timeval reap_every = { 1, 0 };

static void reap_tick(evutil_socket_t fd, short what, void *arg)
{
	slurm_reap(arg);
}

static int setup(struct agent *a)
{
	char host[256], *dot;
	ssize_t n;
	int ret;

	n = readlink("/proc/self/exe", a->self, sizeof(a->self) - 1);
	if (n <= 0)
		return -errno;
	a->self[n] = '\0';
	if (!a->conf.name) {
		gethostname(host, sizeof(host));
		host[sizeof(host) - 1] = '\0';
		dot = strchr(host, '.');
		if (dot)
			*dot = '\0';
		a->conf.name = strdup(host);
	}
	ret = find_crd(a);
	if (ret)
		return ret;
	/* restored trees and the orphans of dumped ones come back here, to be reaped */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		alog("can't be a child subreaper: %m\n");
	signal(SIGPIPE, SIG_IGN);
	ret = topo_open(&a->topo);
	if (ret)
		return ret;
	a->base = event_base_new();
	if (!a->base)
		return -ENOMEM;
	ret = rpc_new(a->conf.munge_socket, 0, &a->rpc);
	if (ret)
		return ret;
	ret = rpc_listen(a->rpc, a->base, a->conf.listen, serve_msg, serve_close, a,
			 &a->listener);
	if (ret)
		return ret;
	if (a->conf.pidfile && write_pidfile(a->conf.pidfile))
		return -EIO;
	a->reaper = event_new(a->base, -1, EV_PERSIST, reap_tick, a);
	if (!a->reaper || event_add(a->reaper, &reap_every))
		return -ENOMEM;
	return 0;
}

static void teardown(struct agent *a)
{
	struct job *j;

	if (a->reaper)
		event_free(a->reaper);
	while (a->reap) {
		struct reap_wait *w = a->reap;

		a->reap = w->next;
		free(w);
	}

	while ((j = a->jobs)) {
		a->jobs = j->next;
		job_reset_trees(j);
		if (j->deadline)
			event_free(j->deadline);
		if (j->ticker)
			event_free(j->ticker);
		if (j->hold)
			event_free(j->hold);
		for (int i = 0; i < j->n_remap; i++)
			free(j->remap[i]);
		free(j->remap);
		free(j->store);
		free(j->from);
		free(j->id);
		free(j);
	}
	rpc_listener_free(a->listener);
	rpc_free(a->rpc);
	if (a->base)
		event_base_free(a->base);
	topo_close(a->topo);
	if (a->conf.pidfile)
		unlink(a->conf.pidfile);
	conf_free(&a->conf);
}

int main(int argc, char **argv)
{
	struct event *sigs[3] = { };
	struct agent a = { };
	char topo[64];
	int ret, fd, i;

	if (HOOK_MODE(argc, argv))
		return hook_main(argc > 1 && strcmp(argv[1], "--hook") ? argv[1] : NULL);
	if (conf_load(argc, argv, &a.conf))
		return 2;
	if (a.conf.log) {
		fd = open(a.conf.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0) {
			fprintf(stderr, "crjob-agent: can't open the log %s: %m\n", a.conf.log);
			return 1;
		}
		agent_log_init(fd);
		close(fd);
	} else {
		agent_log_init(STDERR_FILENO);
	}
	ret = setup(&a);
	if (ret) {
		alog("not started: %s\n", strerror(-ret));
		teardown(&a);
		return 1;
	}
	sigs[0] = evsignal_new(a.base, SIGCHLD, on_sigchld, &a);
	sigs[1] = evsignal_new(a.base, SIGTERM, on_term, &a);
	sigs[2] = evsignal_new(a.base, SIGINT, on_term, &a);
	for (i = 0; i < 3; i++)
		evsignal_add(sigs[i], NULL);
	topo_summary(a.topo, topo, sizeof(topo));
	alog("node %s listening on %s (port %d), store %s, crd %s, max %d parallel, %s, "
	     "crd logs %s\n", a.conf.name, a.conf.listen, rpc_listener_port(a.listener),
	     a.conf.store ?: "(per request)", a.crd, a.conf.max_parallel, topo,
	     a.conf.crd_logs ?: "in memory");
	child_reap(&a);
	event_base_dispatch(a.base);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	alog("exiting\n");
	teardown(&a);
	return 0;
}
