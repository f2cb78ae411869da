/*
 * Restored trees belong to their Slurm job.  The agent restores them as its
 * own children, outside every Slurm cgroup: scancel, the time limit and the
 * end of the job would not reach them, and a job's processes would outlive
 * it on every node but the batch host.  Like pam_slurm_adopt does with an ssh
 * session, each restored process is moved into the job's extern step on this
 * node (slurmd makes it on every node of the job with PrologFlags=Contain),
 * which Slurm signals and kills with the job.
 *
 * cgroup v1 (one hierarchy per controller): CTRL/slurm[_NODE]/uid_U/job_J/
 * step_extern, in every hierarchy where Slurm made it (slurm_NODE where
 * several slurmd share a machine).  cgroup v2: system.slice/
 * slurmstepd.scope/job_J/step_extern/user/task_special, where
 * pam_slurm_adopt puts its processes.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define CG_ROOT "/sys/fs/cgroup"

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
		if (de->d_name[0] == '.' ||
		    v1_step(de->d_name, a->conf.name, job, uid, dir, sizeof(dir)))
			continue;
		err = cg_move(dir, pids, n);
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
