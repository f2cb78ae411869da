/*
 * Restored trees belong to their Slurm job.  The agent restores them as its
 * own children, outside every Slurm cgroup: the time limit and the end of the
 * job would not reach them, and a job's processes would outlive it on every
 * node but the batch host.  Like pam_slurm_adopt does with an ssh session,
 * each restored process (and each daemon SPAWN starts) joins the job on this
 * node, only where slurmd made the job's extern step (PrologFlags=Contain).
 *
 * cgroup v1 (one hierarchy per controller): CTRL/slurm[_NODE]/uid_U/job_J/
 * crjob, beside step_extern, in every hierarchy where Slurm made the step
 * (slurm_NODE where several slurmd share a machine).  Not in the step itself:
 * Slurm signals a step's own processes (proctrack/cgroup reads the step's
 * cgroup.procs), and at a requeue or a preemption it sends the extern step
 * SIGTERM together with the batch step, whose SIGTERM crjob turns into a
 * checkpoint: the daemons and ranks (orted exits at SIGTERM) were gone before
 * it.  Beside the step they are still the job's (its memory, its cpuset),
 * and slurm_reap() kills them when Slurm has removed the extern step, i.e.
 * when the job has ended on this node, and removes what Slurm could not.
 *
 * cgroup v2: system.slice/slurmstepd.scope/job_J/step_extern/user/
 * task_special, where pam_slurm_adopt puts its processes (Slurm's SIGTERM
 * reaches them there).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_OURS "crjob"		/* job_J/crjob: the job's trees that crjob started */
#define REAP_GRACE_S	30	/* after the job's end: its checkpoint at SIGTERM first */

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* a Slurm job id, or the job is not Slurm's: nothing else may go in a path */
static bool slurm_job_id(const char *job)
{
	const char *p;

	if (!job || !*job || strlen(job) > 20)
		return false;
	for (p = job; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return true;
}

/* write each pid to dir/cgroup.procs; the first error */
static int cg_move(const char *dir, const pid_t *pids, int n)
{
	char path[PATH_MAX], buf[16];
	int fd, i, len, ret = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (i = 0; i < n; i++) {
		len = snprintf(buf, sizeof(buf), "%d", pids[i]);
		/* a process that exited since is no loss */
		if (write(fd, buf, len) != len && errno != ESRCH && !ret)
			ret = -errno;
	}
	close(fd);
	return ret;
}

static bool is_dir(const char *path)
{
	return access(path, X_OK) == 0;
}

/* the extern step of hierarchy ctrl for node, job and uid; 0 if it is there */
static int v1_step(const char *ctrl, const char *node, const char *job, uid_t uid,
		   char *out, size_t size)
{
	snprintf(out, size, CG_ROOT "/%s/slurm_%s/uid_%u/job_%s/step_extern", ctrl, node,
		 (unsigned)uid, job);
	if (is_dir(out))
		return 0;
	snprintf(out, size, CG_ROOT "/%s/slurm/uid_%u/job_%s/step_extern", ctrl, (unsigned)uid,
		 job);
	return is_dir(out) ? 0 : -ENOENT;
}

/* a copy of the parent's cpuset.cpus or .mems: a new v1 cpuset cgroup has none */
static int cg_inherit(const char *dir, const char *file)
{
	char path[PATH_MAX], val[4096];
	ssize_t len;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/../%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;	/* not the cpuset hierarchy */
	len = read(fd, val, sizeof(val));
	close(fd);
	if (len <= 0)
		return len < 0 ? -errno : 0;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

/* job_J/crjob beside the step dir step (made if missing) in out */
static int v1_ours(const char *step, char *out, size_t size)
{
	const char *slash = strrchr(step, '/');
	int ret;

	snprintf(out, size, "%.*s/" CG_OURS, (int)(slash - step), step);
	if (!mkdir(out, 0755)) {
		ret = cg_inherit(out, "cpuset.cpus");
		if (!ret)
			ret = cg_inherit(out, "cpuset.mems");
		if (ret)
			rmdir(out);
		return ret;
	}
	return errno == EEXIST ? 0 : -errno;
}

int slurm_adopt(const struct agent *a, const char *job, uid_t uid, const pid_t *pids, int n,
		char *why, size_t size)
{
	char dir[PATH_MAX], failed[PATH_MAX] = "";
	struct dirent *de;
	int moved = 0, ret = 0, err;
	DIR *d;

	if (!slurm_job_id(job)) {
		snprintf(why, size, "job %s is not a Slurm job id", job);
		return -ENOENT;
	}
	snprintf(dir, sizeof(dir), CG_ROOT "/system.slice/slurmstepd.scope/job_%s/"
		 "step_extern/user/task_special", job);
	if (is_dir(dir)) {
		ret = cg_move(dir, pids, n);
		moved += !ret;
		if (ret)
			snprintf(failed, sizeof(failed), "%s", dir);
	}
	d = opendir(CG_ROOT);
	while (d && (de = readdir(d))) {
		char ours[PATH_MAX];

		if (de->d_name[0] == '.' ||
		    v1_step(de->d_name, a->conf.name, job, uid, dir, sizeof(dir)))
			continue;
		err = n ? v1_ours(dir, ours, sizeof(ours)) : 0;
		if (!err && n) {
			snprintf(dir, sizeof(dir), "%s", ours);
			err = cg_move(dir, pids, n);
		}
		if (err && !ret) {
			ret = err;
			snprintf(failed, sizeof(failed), "%s", dir);
		}
		moved += !err;
	}
	if (d)
		closedir(d);
	if (ret)
		snprintf(why, size, "can't move into %s: %s", failed, strerror(-ret));
	else if (!moved)
		snprintf(why, size, "no extern step of Slurm job %s of uid %u on node %s "
			 "(PrologFlags=Contain?)", job, (unsigned)uid, a->conf.name);
	return ret ?: (moved ? 0 : -ENOENT);
}

/* SIGKILL to every process in dir; how many there were */
static int cg_kill(const char *dir)
{
	char path[PATH_MAX + 512];
	int n = 0, pid;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	while (f && fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		n++;
	}
	if (f)
		fclose(f);
	return n;
}

/* when the job's extern step was first seen gone (0: not yet), and no more */
static double reap_since(struct agent *a, const char *jobdir, double now)
{
	struct reap_wait *w;

	for (w = a->reap; w; w = w->next)
		if (!strcmp(w->dir, jobdir)) {
			w->seen = true;
			return w->since;
		}
	w = calloc(1, sizeof(*w));
	if (!w)
		return now;
	snprintf(w->dir, sizeof(w->dir), "%s", jobdir);
	w->since = now;
	w->seen = true;
	w->next = a->reap;
	a->reap = w;
	return now;
}

/*
 * job_J/crjob without job_J/step_extern: the job ended here, its trees go,
 * but not at once: a requeue or a preemption removes the step while crjob
 * batch checkpoints the job at Slurm's SIGTERM (stop_timeout), and that
 * checkpoint kills the trees itself once taken.
 */
static void reap_job(struct agent *a, const char *jobdir, const char *name, double now)
{
	char ours[PATH_MAX + 400], step[PATH_MAX + 400];
	struct job *j;
	int n;

	snprintf(ours, sizeof(ours), "%s/" CG_OURS, jobdir);
	snprintf(step, sizeof(step), "%s/step_extern", jobdir);
	if (!is_dir(ours) || is_dir(step))
		return;
	j = job_find(a, name + 4);
	if (now - reap_since(a, jobdir, now) < REAP_GRACE_S || (j && j->phase != J_IDLE))
		return;
	n = cg_kill(ours);
	if (n)
		alog("%s ended: %d processes of its trees killed (%s)\n", name, n, ours);
	/* the dead leave the cgroup once reaped: rmdir on a later round then */
	if (!rmdir(ours))
		rmdir(jobdir);	/* Slurm could not while ours was there */
}

/* every uid_U/job_J below base (CG/CTRL/slurm[_NODE]) */
static void reap_base(struct agent *a, const char *base, double now)
{
	char uid[PATH_MAX], job[PATH_MAX + 300];
	struct dirent *u, *j;
	DIR *du, *dj;

	du = opendir(base);
	while (du && (u = readdir(du))) {
		if (strncmp(u->d_name, "uid_", 4))
			continue;
		snprintf(uid, sizeof(uid), "%s/%s", base, u->d_name);
		dj = opendir(uid);
		while (dj && (j = readdir(dj))) {
			if (strncmp(j->d_name, "job_", 4))
				continue;
			snprintf(job, sizeof(job), "%s/%s", uid, j->d_name);
			reap_job(a, job, j->d_name, now);
		}
		if (dj)
			closedir(dj);
	}
	if (du)
		closedir(du);
}

void slurm_reap(struct agent *a)
{
	struct reap_wait *w, **pw;
	char base[PATH_MAX];
	struct dirent *de;
	double now = now_mono();
	DIR *d;

	for (w = a->reap; w; w = w->next)
		w->seen = false;

	d = opendir(CG_ROOT);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(base, sizeof(base), CG_ROOT "/%s/slurm_%s", de->d_name, a->conf.name);
		reap_base(a, base, now);
		snprintf(base, sizeof(base), CG_ROOT "/%s/slurm", de->d_name);
		reap_base(a, base, now);
	}
	if (d)
		closedir(d);
	/* forget the jobs whose directories are gone */
	for (pw = &a->reap; (w = *pw); ) {
		if (w->seen) {
			pw = &w->next;
			continue;
		}
		*pw = w->next;
		free(w);
	}
}
