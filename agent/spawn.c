/*
 * SPAWN: start a program on this node for a job's owner, the way sshd with
 * pam_slurm_adopt would, but without ssh.  MPI launchers start their remote
 * daemons (orted, hydra_pmi_proxy) with an rsh; crmpi-rsh asks the agent of
 * the target node instead, so that each daemon is
 *
 * - run as the authenticated caller (munge), never as anyone else: root may
 *   name the owner, a user only himself;
 * - allowed only on a node of the caller's Slurm job: the job's extern step
 *   (PrologFlags=Contain) must exist here for that uid, and the daemon is put
 *   into the job's cgroup before it runs (slurm-cg.c), so that it ends with
 *   the job;
 * - detached from its launcher (a session of its own, the agent's child): its
 *   tree is a tree of this node, which crd checkpoints and restores here.
 *
 * The reply carries its pid in trees[0]; crmpi-rsh registers the tree with
 * the job's coordinator.  A program that cannot start fails the request with
 * the reason (exec errors come back through a close-on-exec pipe).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define SPAWN_MAX_ARGS	4096

struct spawn_req {
	uid_t uid;
	gid_t gid;
	const char *user;
	const char *home;
	char **argv;		/* NULL-terminated copies */
	char **env;
	const char *cwd;
	const char *output;
};

/* what a request must hold: 0 or -EINVAL with why */
static int spawn_check(const Crjob__Msg *m, char *why, size_t size)
{
	if (!m->n_argv || !m->argv[0] || m->argv[0][0] != '/') {
		snprintf(why, size, "SPAWN needs a program given by its absolute path");
		return -EINVAL;
	}
	if (m->n_argv > SPAWN_MAX_ARGS || m->n_env > SPAWN_MAX_ARGS) {
		snprintf(why, size, "SPAWN: more than %d arguments or variables", SPAWN_MAX_ARGS);
		return -E2BIG;
	}
	if ((m->cwd && *m->cwd && m->cwd[0] != '/') ||
	    (m->output && *m->output && m->output[0] != '/')) {
		snprintf(why, size, "SPAWN: directory and output must be absolute paths");
		return -EINVAL;
	}
	return 0;
}

/* a NULL-terminated copy of n strings (protobuf-c's arrays are not) */
static char **strv(char **v, size_t n)
{
	char **out = calloc(n + 1, sizeof(*out));

	if (out)
		memcpy(out, v, n * sizeof(*out));
	return out;
}

/* the child: join the job, become the user, exec; only returns an errno */
static int spawn_child(struct agent *a, const char *job, const struct spawn_req *r)
{
	pid_t self = getpid();
	char why[PATH_MAX + 64];
	sigset_t all;
	int fd, sig;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	setsid();
	if (slurm_adopt(a, job, r->uid, &self, 1, why, sizeof(why)))
		return EPERM;
	if (initgroups(r->user, r->gid) || setgid(r->gid) || setuid(r->uid))
		return errno;
	if (getuid() != r->uid || geteuid() != r->uid)
		return EPERM;
	if (chdir(r->cwd && *r->cwd ? r->cwd : r->home) && chdir("/"))
		return errno;
	/* nothing of the agent's (sockets, logs) reaches the program */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC))
		return errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0 || dup2(fd, 0) < 0)
		return errno;
	/* opened as the user: the agent writes nowhere the user could not */
	if (r->output && *r->output)
		fd = open(r->output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		return errno;
	execve(r->argv[0], r->argv, r->env);
	return errno;
}

/* fork the program; its pid, or -errno with why */
static pid_t spawn_fork(struct agent *a, const char *job, const struct spawn_req *r, char *why,
			size_t size)
{
	int p[2], err = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(p[0]);
		close(p[1]);
		snprintf(why, size, "fork: %s", strerror(err));
		return -err;
	}
	if (pid == 0) {
		close(p[0]);
		err = spawn_child(a, job, r);
		n = write(p[1], &err, sizeof(err));
		_exit(n == sizeof(err) ? 127 : 126);
	}
	close(p[1]);
	do
		n = read(p[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == sizeof(err)) {
		snprintf(why, size, "%s: %s", r->argv[0], strerror(err));
		return -err;
	}
	return pid;
}

/* who the program runs as: the caller, or the owner root names; 0 or -errno */
static int spawn_user(struct agent *a, const Crjob__Msg *m, const struct rpc_peer *from,
		      struct spawn_req *r, char *why, size_t size)
{
	struct passwd *pw;
	int ret;

	r->uid = from->uid == 0 && m->has_owner ? m->owner : from->uid;
	ret = auth_request(a, from->uid, r->uid, why, size);
	if (ret)
		return ret;
	pw = getpwuid(r->uid);
	if (!pw) {
		snprintf(why, size, "uid %u has no passwd entry on this node", (unsigned)r->uid);
		return -ENOENT;
	}
	r->gid = pw->pw_gid;
	r->user = pw->pw_name;
	r->home = pw->pw_dir;
	/* the job must be the user's and have a step here: the check pam_slurm_adopt makes */
	ret = slurm_adopt(a, m->job, r->uid, NULL, 0, why, size);
	if (ret)
		return -EPERM;
	return 0;
}

void spawn_serve(struct agent *a, struct rpc_conn *c, const Crjob__Msg *m,
		 const struct rpc_peer *from)
{
	Crjob__Msg rep = CRJOB__MSG__INIT;
	Crjob__Tree tree = CRJOB__TREE__INIT, *tp = &tree;
	struct spawn_req r = { 0 };
	char why[PATH_MAX + 128] = "";
	pid_t pid;
	int ret;

	ret = spawn_check(m, why, sizeof(why));
	if (!ret)
		ret = spawn_user(a, m, from, &r, why, sizeof(why));
	if (!ret) {
		r.argv = strv(m->argv, m->n_argv);
		r.env = strv(m->env, m->n_env);
		r.cwd = m->cwd;
		r.output = m->output;
		ret = r.argv && r.env ? 0 : -ENOMEM;
	}
	pid = ret ? ret : spawn_fork(a, m->job, &r, why, sizeof(why));
	free(r.argv);
	free(r.env);
	rep.kind = CRJOB__KIND__REPLY;
	rep.id = m->id;
	rep.op = m->op;
	rep.has_error = true;
	rep.error = pid < 0 ? pid : 0;
	if (pid < 0) {
		alog("refused SPAWN of job %s from uid %u (%s): %s\n", m->job ? m->job : "-",
		     (unsigned)from->uid, from->addr, *why ? why : strerror(-pid));
		rep.message = *why ? why : strerror(-pid);
	} else {
		alog("job %s: SPAWN %s as uid %u: pid %d\n", m->job, m->argv[0],
		     (unsigned)r.uid, pid);
		tree.pid = pid;
		rep.n_trees = 1;
		rep.trees = &tp;
	}
	rpc_send(c, &rep);
}
