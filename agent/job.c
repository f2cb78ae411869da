/*
 * Jobs and their trees: one crd child per tree, held at its hooks, and the
 * checkpoint phases FREEZE, DUMP, THAW and ABORT (docs/distributed.md).
 *
 * Every tree of a job is frozen at once (a consistent cut needs them all
 * stopped together), whatever max_parallel says; the DUMP phase then lets at
 * most max_parallel trees of all jobs write at once, the others wait frozen.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "agent.h"

static const char *const phase_names[] = {
	[J_IDLE] = "idle", [J_FREEZING] = "freezing", [J_FROZEN] = "frozen",
	[J_DUMPING] = "dumping", [J_DUMPED] = "dumped", [J_THAWING] = "thawing",
	[J_ABORTING] = "aborting", [J_RESTORING] = "restoring", [J_RESTORED] = "restored",
	[J_RESUMING] = "resuming", [J_KILLING] = "killing",
};

const char *job_phase_name(enum job_phase p)
{
	return phase_names[p];
}

struct job *job_find(struct agent *a, const char *id)
{
	struct job *j;

	for (j = a->jobs; j; j = j->next)
		if (!strcmp(j->id, id))
			return j;
	return NULL;
}

struct job *job_get(struct agent *a, const char *id)
{
	struct job *j = job_find(a, id);

	if (j)
		return j;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->id = strdup(id))) {
		free(j);
		return NULL;
	}
	j->a = a;
	j->next = a->jobs;
	a->jobs = j;
	return j;
}

static void tree_close_hook(struct tree *t)
{
	if (t->hook_ev)
		event_free(t->hook_ev);
	t->hook_ev = NULL;
	if (t->hook_fd >= 0)
		close(t->hook_fd);
	t->hook_fd = -1;
	t->hooklen = 0;
}

void job_reset_trees(struct job *j)
{
	int i;

	for (i = 0; i < j->ntrees; i++) {
		struct tree *t = &j->trees[i];

		tree_close_hook(t);
		if (t->out_fd >= 0)
			close(t->out_fd);
		if (t->log_fd >= 0)
			close(t->log_fd);
		if (t->crd)
			child_forget(j->a, t->crd);
		free(t->writer);
		free(t->cpuset);
		free(t->error);
	}
	free(j->trees);
	j->trees = NULL;
	j->ntrees = 0;
}

int job_set_trees(struct job *j, Crjob__Tree **trees, size_t n, const char *node)
{
	char w[256];
	size_t i;

	job_reset_trees(j);
	j->trees = calloc(n ? n : 1, sizeof(*j->trees));
	if (!j->trees)
		return -ENOMEM;
	j->ntrees = n;
	for (i = 0; i < n; i++) {
		struct tree *t = &j->trees[i];

		t->job = j;
		t->pid = trees[i]->pid;
		t->hook_fd = t->out_fd = t->log_fd = -1;
		snprintf(w, sizeof(w), "%s-%d", node, t->pid);
		t->writer = strdup(trees[i]->writer && *trees[i]->writer ? trees[i]->writer : w);
		if (trees[i]->cpuset && *trees[i]->cpuset)
			t->cpuset = strdup(trees[i]->cpuset);
		if (!t->writer)
			return -ENOMEM;
		if (t->pid <= 0 || strchr(t->writer, '/') || t->writer[0] == '.')
			return -EINVAL;
	}
	return 0;
}

bool job_all(const struct job *j, unsigned states)
{
	int i;

	for (i = 0; i < j->ntrees; i++)
		if (!(ST(j->trees[i].state) & states))
			return false;
	return true;
}

bool job_any(const struct job *j, unsigned states)
{
	int i;

	for (i = 0; i < j->ntrees; i++)
		if (ST(j->trees[i].state) & states)
			return true;
	return false;
}

static bool job_has_crd(const struct job *j)
{
	int i;

	for (i = 0; i < j->ntrees; i++)
		if (j->trees[i].crd)
			return true;
	return false;
}

/* ------------------------------------------------------------------ the store */

int job_prepare_dir(struct job *j, char *why, size_t size)
{
	char path[4096];
	struct stat st;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/jobs", j->store);
	if (mkdir(path, 0755) && errno != EEXIST) {
		ret = -errno;
		snprintf(why, size, "can't create %s: %s", path, strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "%s/jobs/%s", j->store, j->id);
	if (mkdir(path, 0700) && errno != EEXIST) {
		ret = -errno;
		snprintf(why, size, "can't create %s: %s", path, strerror(-ret));
		return ret;
	}
	/* not through a link a user planted */
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, size, "%s: %s", path, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	ret = 0;
	if (st.st_uid != j->owner && st.st_uid != 0) {
		snprintf(why, size, "%s belongs to uid %u, not to the owner %u", path,
			 (unsigned)st.st_uid, (unsigned)j->owner);
		ret = -EPERM;
	} else if (fchown(fd, j->owner, -1) || fchmod(fd, 0700)) {
		ret = -errno;
		snprintf(why, size, "can't give %s to uid %u: %s", path, (unsigned)j->owner,
			 strerror(-ret));
	}
	close(fd);
	return ret;
}

/*
 * RESTORE of another job's generation (--restart-from): crd restores as root,
 * so only a job whose directory is the owner's (the agents and coordinators
 * made it so) may be restored for that owner; root may restore any.
 */
int job_check_from(struct job *j, char *why, size_t size)
{
	char path[4096];
	struct stat st;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/jobs/%s", j->store, j->from);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, size, "job %s: no checkpoints of job %s: %s", j->id, j->from,
			 strerror(-ret));
	} else if (j->owner != 0 && st.st_uid != j->owner) {
		snprintf(why, size, "job %s: the checkpoints of job %s belong to uid %u, not to "
			 "the owner %u", j->id, j->from, (unsigned)st.st_uid, (unsigned)j->owner);
		ret = -EPERM;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* FREEZE with generation 0: one past the highest of the job, partial or not */
static uint64_t next_gen(const struct job *j)
{
	char path[4096];
	unsigned long long g, max = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/jobs/%s", j->store, j->id);
	d = opendir(path);
	if (!d)
		return 1;
	while ((de = readdir(d)))
		if (sscanf(de->d_name, "gen-%llu", &g) == 1 && g > max)
			max = g;
	closedir(d);
	return max + 1;
}

/* bytes a writer put in the store: its pack and its index */
static uint64_t writer_bytes(const struct job *j, const struct tree *t)
{
	static const char *const ext[] = { "pack", "idx" };
	char path[4096];
	struct stat st;
	uint64_t sum = 0;
	int i;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/jobs/%s/gen-%llu.partial/%s.%s", j->store, j->id,
			 (unsigned long long)j->gen, t->writer, ext[i]);
		if (!stat(path, &st))
			sum += st.st_size;
	}
	return sum;
}

/*
 * An aborted dump that got past post-dump has its writer finished already:
 * its files go now, not only when the coordinator removes the generation.
 */
static void drop_writer(const struct job *j, const struct tree *t)
{
	static const char *const ext[] = { "pack", "idx", "done", "done.tmp" };
	char path[4096];
	int i;

	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/jobs/%s/gen-%llu.partial/%s.%s", j->store, j->id,
			 (unsigned long long)j->gen, t->writer, ext[i]);
		if (!unlink(path))
			alog("job %s: removed %s of the aborted generation\n", j->id, path);
	}
	snprintf(path, sizeof(path), "%s/jobs/%s/gen-%llu.partial", j->store, j->id,
		 (unsigned long long)j->gen);
	rmdir(path);	/* the last writer of this generation takes the directory along */
}

/* ------------------------------------------------------------------ trees */

/*
 * crd's log of a tree (its stderr, and its hooks'): a memfd, gone with the
 * tree's record, unless crd_logs names a directory to keep them in.
 */
int tree_open_log(struct job *j, struct tree *t, const char *what)
{
	char name[64];
	int ret;

	if (t->log_fd >= 0)
		close(t->log_fd);
	t->log[0] = '\0';
	if (j->a->conf.crd_logs) {
		snprintf(t->log, sizeof(t->log), "%s/%s-gen%llu-%d-%s.log", j->a->conf.crd_logs,
			 j->id, (unsigned long long)j->gen, t->pid, what);
		t->log_fd = open(t->log, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	} else {
		snprintf(name, sizeof(name), "crd-%s-%d-%s", j->id, t->pid, what);
		t->log_fd = memfd_create(name, MFD_CLOEXEC);
	}
	if (t->log_fd >= 0)
		return 0;
	ret = -errno;
	alog("job %s: tree %d: can't make crd's log %s: %m\n", j->id, t->pid,
	     t->log[0] ? t->log : "(memfd)");
	return ret;
}

void tree_log_tail(const struct tree *t, char *buf, size_t size)
{
	char data[4096], *line, *last = NULL, *err = NULL, *save = NULL;
	struct stat st;
	ssize_t n = 0;
	off_t from;

	buf[0] = '\0';
	if (t->log_fd < 0 || fstat(t->log_fd, &st) || st.st_size <= 0)
		return;
	from = st.st_size > (off_t)sizeof(data) - 1 ? st.st_size - (off_t)sizeof(data) + 1 : 0;
	n = pread(t->log_fd, data, sizeof(data) - 1, from);
	if (n <= 0)
		return;
	data[n] = '\0';
	/* the first error is the cause; later ones are its consequences */
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!err && strstr(line, "Error"))
			err = line;
		if (*line)
			last = line;
	}
	snprintf(buf, size, "%s", err ?: last ?: "");
}

void tree_fail(struct job *j, struct tree *t, const char *fmt, ...)
{
	char why[512], tail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	tree_log_tail(t, tail, sizeof(tail));
	free(t->error);
	if (asprintf(&t->error, "tree %d: %s%s%s", t->pid, why, *tail ? ": " : "", tail) < 0)
		t->error = NULL;
	if (!t->err)
		t->err = -ECANCELED;
	t->state = T_FAILED;
	alog("job %s: %s%s%s\n", j->id, t->error ?: why, t->log[0] ? "; crd's log: " : "",
	     t->log);
}

int tree_answer(struct tree *t, bool go_on)
{
	if (t->hook_fd < 0)
		return -EPIPE;
	if (go_on && write(t->hook_fd, "y", 1) == 1)
		return 0;
	/* a "no" is the hook's socket closed: the hook sees EOF whenever it asks */
	tree_close_hook(t);
	return go_on ? -EPIPE : 0;
}

static void tree_hook(struct job *j, struct tree *t, const char *action)
{
	struct agent *a = j->a;
	char why[512];

	if (j->phase == J_ABORTING || j->phase == J_KILLING || t->state == T_FAILED ||
	    t->state == T_RELEASING) {
		tree_answer(t, false);
	} else if (!strcmp(action, "post-freeze") && t->state == T_STARTED &&
		   (t->err = auth_tree(t->pid, j->owner, why, sizeof(why)))) {
		/* frozen now, checked again: a setuid child may have come since FREEZE */
		tree_answer(t, false);
		tree_fail(j, t, "refused once frozen: %s", why);
	} else if (!strcmp(action, "post-freeze") && t->state == T_STARTED) {
		t->state = T_FROZEN;
		free(t->cpuset);
		t->cpuset = topo_get_binding(a->topo, t->pid);
	} else if (!strcmp(action, "post-dump") && t->state == T_DUMPING) {
		t->state = T_DUMPED;
		t->bytes = writer_bytes(j, t);
		alog("job %s: tree %d written: %llu bytes\n", j->id, t->pid,
		     (unsigned long long)t->bytes);
	} else if (!strcmp(action, "pre-resume") && t->state == T_RESTORING) {
		t->state = T_RESTORED;
		t->restored = true;
	} else {
		tree_answer(t, false);
		tree_fail(j, t, "unexpected hook %s", action);
	}
	agent_pump(a);
	job_progress(j);
}

static void hook_read(evutil_socket_t fd, short what, void *arg)
{
	struct tree *t = arg;
	struct job *j = t->job;
	char action[64], *nl;
	ssize_t n;

	n = read(fd, t->hookbuf + t->hooklen, sizeof(t->hookbuf) - 1 - t->hooklen);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		tree_close_hook(t);	/* crd and its hooks are gone: the exit tells */
		return;
	}
	t->hooklen += n;
	t->hookbuf[t->hooklen] = '\0';
	while ((nl = strchr(t->hookbuf, '\n'))) {
		*nl = '\0';
		if (sscanf(t->hookbuf, "%63s", action) != 1)
			action[0] = '\0';
		t->hooklen -= nl + 1 - t->hookbuf;
		memmove(t->hookbuf, nl + 1, t->hooklen + 1);
		tree_hook(j, t, action);
		if (t->hook_fd < 0)
			return;
	}
	if (t->hooklen == sizeof(t->hookbuf) - 1) {
		tree_close_hook(t);
		tree_fail(j, t, "garbage from the hook");
		job_progress(j);
	}
}

/* a tree's crd (or net-unlock) ended */
static void tree_crd_exit(struct agent *a, pid_t pid, int status, void *arg)
{
	struct tree *t = arg;
	struct job *j = t->job;
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	ssize_t n;

	t->crd = 0;
	if (t->out_fd >= 0) {
		while (t->outlen < sizeof(t->outbuf) - 1 &&
		       (n = read(t->out_fd, t->outbuf + t->outlen,
				 sizeof(t->outbuf) - 1 - t->outlen)) > 0)
			t->outlen += n;
		t->outbuf[t->outlen] = '\0';
		close(t->out_fd);
		t->out_fd = -1;
	}
	tree_close_hook(t);
	if (t->state == T_UNLOCKING && j->phase == J_KILLING && t->restored) {
		kill_tree_now(j, t);	/* resumed, then killed */
	} else if (t->state == T_UNLOCKING) {
		if (ok)
			t->state = T_DONE;
		else
			tree_fail(j, t, "crd net-unlock failed (status %#x)", status);
	} else if (j->phase == J_KILLING) {
		kill_tree_now(j, t);
	} else if (j->phase == J_ABORTING) {
		/* a coordinator gone silent may be committing them: not ours to remove */
		if (!j->self_abort)
			drop_writer(j, t);
		t->state = T_DONE;
	} else if (t->state == T_RELEASING || t->state == T_RESUMING) {
		if (!ok)
			tree_fail(j, t, "crd failed after its last hook (status %#x)", status);
		else if (t->state == T_RESUMING || j->stop)
			tree_net_unlock(j, t);
		else
			t->state = T_DONE;
	} else if (t->state != T_FAILED) {
		tree_fail(j, t, "crd ended (status %#x) while the tree was %s", status,
			  job_phase_name(j->phase));
	}
	agent_pump(a);
	job_progress(j);
}

int tree_spawn_crd(struct job *j, struct tree *t, char *const argv[], bool want_stdout,
		   child_done_cb done)
{
	struct spawn_opts o = { .out_fd = -1, .err_fd = -1, .hook_fd = -1 };
	int sv[2] = { -1, -1 }, out[2] = { -1, -1 }, ret;

	o.err_fd = t->log_fd;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ||
	    (want_stdout && pipe2(out, O_CLOEXEC))) {
		ret = -errno;
		alog("job %s: tree %d: no socketpair or pipe for crd: %m\n", j->id, t->pid);
		goto out;
	}
	o.hook_fd = sv[1];
	o.out_fd = out[1];
	ret = child_spawn(j->a, argv, &o, done ?: tree_crd_exit, t, &t->crd);
	if (ret)
		goto out;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	t->hook_fd = sv[0];
	sv[0] = -1;
	t->hook_ev = event_new(j->a->base, t->hook_fd, EV_READ | EV_PERSIST, hook_read, t);
	event_add(t->hook_ev, NULL);
	if (want_stdout) {
		fcntl(out[0], F_SETFL, O_NONBLOCK);
		t->out_fd = out[0];
		out[0] = -1;
		t->outlen = 0;
	}
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	return ret;
}

/* `crd net-unlock PID`: after a stop (the killed tree's lock) or a resume */
void tree_net_unlock(struct job *j, struct tree *t)
{
	char pid[16];
	char *argv[] = { j->a->crd, "net-unlock", pid, NULL };
	struct spawn_opts o = { .out_fd = -1, .err_fd = t->log_fd, .hook_fd = -1 };
	int ret;

	snprintf(pid, sizeof(pid), "%d", t->pid);
	t->state = T_UNLOCKING;
	ret = child_spawn(j->a, argv, &o, tree_crd_exit, t, &t->crd);
	if (ret)
		tree_fail(j, t, "can't run crd net-unlock: %s", strerror(-ret));
}

/* ------------------------------------------------------------------ scheduling */

static int active_count(const struct agent *a)
{
	const struct job *j;
	int i, n = 0;

	for (j = a->jobs; j; j = j->next)
		for (i = 0; i < j->ntrees; i++)
			n += j->trees[i].state == T_DUMPING || j->trees[i].state == T_RESTORING;
	return n;
}

void agent_pump(struct agent *a)
{
	int active = active_count(a), i, ret;
	struct job *j;

	for (j = a->jobs; j && active < a->conf.max_parallel; j = j->next) {
		/* after a failure the coordinator aborts: nothing more starts */
		if ((j->phase != J_DUMPING && j->phase != J_RESTORING) || job_any(j, ST(T_FAILED)))
			continue;
		for (i = 0; i < j->ntrees && active < a->conf.max_parallel; i++) {
			struct tree *t = &j->trees[i];

			if (t->state != T_QUEUED)
				continue;
			if (j->phase == J_DUMPING) {
				ret = tree_answer(t, true);
				t->state = T_DUMPING;
				if (ret)
					tree_fail(j, t, "its crd is gone");
				else
					alog("job %s: tree %d writes (%d of at most %d)\n", j->id,
					     t->pid, active + 1, a->conf.max_parallel);
			} else {
				ret = restore_start_tree(j, t);
			}
			if (!ret)
				active++;
		}
	}
}

/* ------------------------------------------------------------------ phases */

static struct tree *first_failed(struct job *j)
{
	int i;

	for (i = 0; i < j->ntrees; i++)
		if (j->trees[i].state == T_FAILED)
			return &j->trees[i];
	return NULL;
}

static void reply_failed(struct job *j, struct tree *t)
{
	job_reply(j, t->err ?: -ECANCELED, "%s", t->error ?: "a tree failed");
}

/* trees whose crd runs are let go with a "no": crd releases them */
static void abort_trees(struct job *j)
{
	int i;

	j->phase = J_ABORTING;
	for (i = 0; i < j->ntrees; i++) {
		struct tree *t = &j->trees[i];

		tree_answer(t, false);
		if (t->crd)
			t->state = T_RELEASING;
		else if (t->state != T_FAILED)
			t->state = T_DONE;
	}
}

/*
 * The coordinator holds a job frozen between requests (FROZEN, DUMPED,
 * RESTORED).  One that died meanwhile would leave it so forever: past
 * hold_timeout without a request, the agent lets the trees go itself.
 */
static void hold_expired(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	if (j->phase != j->held || j->pending)
		return;
	alog("job %s: held %s for %s without a request from its coordinator: %s\n", j->id,
	     job_phase_name(j->phase), j->phase == J_FROZEN && j->deadline_ms ?
	     "the FREEZE deadline" : "hold_timeout",
	     j->phase == J_RESTORED ? "killing the restored trees" : "aborting");
	j->self_abort = true;
	if (j->phase == J_RESTORED)
		job_kill(j, NULL, 0);
	else
		job_abort(j);
}

static void hold(struct job *j, enum job_phase phase)
{
	struct timeval tv = { j->a->conf.hold_timeout_s, 0 };

	j->phase = phase;
	j->held = phase;
	/*
	 * The coordinator sends DUMP once every node is frozen, within its FREEZE
	 * deadline, or gives up: frozen longer than that (and a margin), the
	 * checkpoint is dead even if its ABORT cannot reach us.
	 */
	if (phase == J_FROZEN && j->deadline_ms &&
	    (!j->a->conf.hold_timeout_s ||
	     (int)(j->deadline_ms / 1000) < j->a->conf.hold_timeout_s)) {
		tv.tv_sec = j->deadline_ms / 1000 + 1;
		tv.tv_usec = j->deadline_ms % 1000 * 1000;
	} else if (!j->a->conf.hold_timeout_s) {
		return;
	}
	if (!j->hold)
		j->hold = evtimer_new(j->a->base, hold_expired, j);
	if (j->hold)
		evtimer_add(j->hold, &tv);
}

void job_orphaned(struct job *j)
{
	alog("job %s: the connection of its %s closed: %s\n", j->id, rpc_op_name(j->req_op),
	     j->phase == J_FREEZING || j->phase == J_DUMPING ? "aborting" :
	     j->phase == J_RESTORING ? "killing the restored trees" : "finishing it");
	j->pending = false;
	j->self_abort = true;
	if (j->phase == J_FREEZING || j->phase == J_DUMPING)
		job_abort(j);
	else if (j->phase == J_RESTORING)
		job_kill(j, NULL, 0);
}

void job_progress(struct job *j)
{
	struct tree *f = first_failed(j);

	switch (j->phase) {
	case J_FREEZING:
		if (f) {
			/* the others are let go now; the coordinator's ABORT finds them done */
			reply_failed(j, f);
			abort_trees(j);
			job_progress(j);
		} else if (job_all(j, ST(T_FROZEN))) {
			hold(j, J_FROZEN);
			if (j->deadline)
				event_del(j->deadline);
			job_reply(j, 0, NULL);
		}
		break;
	case J_DUMPING:
		if (f && j->pending) {
			/* the others stay frozen for the coordinator's ABORT, not forever */
			reply_failed(j, f);
			hold(j, J_DUMPING);
		} else if (!f && job_all(j, ST(T_DUMPED))) {
			hold(j, J_DUMPED);
			job_reply(j, 0, NULL);
		}
		break;
	case J_THAWING:
	case J_RESUMING:
		if (job_any(j, ST(T_RELEASING) | ST(T_RESUMING) | ST(T_UNLOCKING)))
			break;
		j->phase = J_IDLE;
		if (f)
			reply_failed(j, f);
		else
			job_reply(j, 0, NULL);
		break;
	case J_ABORTING:
	case J_KILLING:
		if (job_has_crd(j))
			break;
		j->phase = J_IDLE;
		job_reply(j, 0, NULL);
		break;
	case J_RESTORING:
		if (f) {
			reply_failed(j, f);
			job_kill(j, NULL, 0);
		} else if (job_all(j, ST(T_RESTORED))) {
			hold(j, J_RESTORED);
			job_reply(j, 0, NULL);
		}
		break;
	default:
		break;
	}
}

static void freeze_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int i;

	if (j->phase != J_FREEZING)
		return;
	for (i = 0; i < j->ntrees; i++)
		if (j->trees[i].state == T_STARTED) {
			j->trees[i].err = -ETIMEDOUT;
			tree_fail(j, &j->trees[i], "not frozen within the deadline");
		}
	job_progress(j);
}

static int freeze_tree(struct job *j, struct tree *t)
{
	char pid[16], gen[24];
	char *argv[24 + 2 * AGENT_MAX_CAPTURE] = {
		j->a->crd, "dump", "-t", pid, "--store", j->store, "--job", j->id,
		"--generation", gen, "--writer", t->writer, "--no-commit",
		"--action-script", j->a->self,
	};
	int argc = 15, ret, i;

	snprintf(pid, sizeof(pid), "%d", t->pid);
	snprintf(gen, sizeof(gen), "%llu", (unsigned long long)j->gen);
	if (!j->stop)
		argv[argc++] = "--leave-running";
	for (i = 0; i < j->a->conf.n_capture; i++) {
		argv[argc++] = "--capture-path";
		argv[argc++] = j->a->conf.capture[i];
	}
	t->state = T_STARTED;
	t->bytes = 0;
	ret = tree_open_log(j, t, "dump");
	if (!ret)
		ret = tree_spawn_crd(j, t, argv, false, NULL);
	if (ret)
		tree_fail(j, t, "can't start crd dump: %s", strerror(-ret));
	return ret;
}

int job_freeze(struct job *j, uint32_t deadline_ms, char *why, size_t size)
{
	struct timeval tv = { deadline_ms / 1000, (deadline_ms % 1000) * 1000 };
	int i;

	if (!j->gen)
		j->gen = next_gen(j);
	j->deadline_ms = deadline_ms;
	j->self_abort = false;
	j->phase = J_FREEZING;
	alog("job %s: freezing %d trees for generation %llu%s\n", j->id, j->ntrees,
	     (unsigned long long)j->gen, j->stop ? " (stop)" : "");
	for (i = 0; i < j->ntrees; i++)
		if (freeze_tree(j, &j->trees[i]))
			break;
	if (deadline_ms) {
		if (!j->deadline)
			j->deadline = evtimer_new(j->a->base, freeze_deadline, j);
		evtimer_add(j->deadline, &tv);
	}
	job_progress(j);
	return 0;
}

/* while trees write: their bytes so far, each second, as an EVENT */
static void dump_tick(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int i;

	if (j->phase != J_DUMPING) {
		event_del(j->ticker);
		return;
	}
	for (i = 0; i < j->ntrees; i++)
		if (j->trees[i].state == T_DUMPING)
			j->trees[i].bytes = writer_bytes(j, &j->trees[i]);
	job_event(j);
}

int job_dump(struct job *j)
{
	struct timeval tv = { 1, 0 };
	int i;

	if (!j->ticker)
		j->ticker = event_new(j->a->base, -1, EV_PERSIST, dump_tick, j);
	if (j->ticker)
		event_add(j->ticker, &tv);
	j->phase = J_DUMPING;
	for (i = 0; i < j->ntrees; i++)
		j->trees[i].state = T_QUEUED;
	agent_pump(j->a);
	job_progress(j);
	return 0;
}

int job_thaw(struct job *j)
{
	int i;

	j->phase = J_THAWING;
	for (i = 0; i < j->ntrees; i++) {
		struct tree *t = &j->trees[i];

		t->state = T_RELEASING;
		if (tree_answer(t, true))
			tree_fail(j, t, "its crd is gone before the thaw");
	}
	job_progress(j);
	return 0;
}

int job_abort(struct job *j)
{
	if (j->phase == J_RESTORING || j->phase == J_RESTORED)
		return job_kill(j, NULL, 0);
	if (j->deadline)
		event_del(j->deadline);
	abort_trees(j);
	alog("job %s: aborting generation %llu\n", j->id, (unsigned long long)j->gen);
	job_progress(j);
	return 0;
}
