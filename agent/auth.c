/*
 * Authorization (docs/distributed.md): the munge uid is the caller; the job's
 * owner must be the caller unless the caller is root; allow_users, when set,
 * must list the owner; every process of a tree must be the owner's in all
 * four uids (real, effective, saved, fs), so that a user cannot have root's
 * or another user's process checkpointed, killed or frozen.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

int auth_request(const struct agent *a, uid_t caller, uid_t owner, char *why, size_t size)
{
	int i;

	if (caller != 0 && caller != owner) {
		snprintf(why, size, "uid %u may not act for owner uid %u", (unsigned)caller,
			 (unsigned)owner);
		return -EPERM;
	}
	if (!a->conf.n_allow)
		return 0;
	for (i = 0; i < a->conf.n_allow; i++)
		if (a->conf.allow[i] == owner)
			return 0;
	snprintf(why, size, "owner uid %u is not in allow_users", (unsigned)owner);
	return -EPERM;
}

static int add_children(pid_t pid, pid_t **v, int *n, int *cap)
{
	char path[300], buf[4096], *p, *end;
	struct dirent *de;
	FILE *f;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", pid, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;	/* the thread is gone */
		while (fgets(buf, sizeof(buf), f)) {
			for (p = buf;; p = end) {
				long c = strtol(p, &end, 10);

				if (end == p)
					break;
				if (*n == *cap) {
					pid_t *nv = realloc(*v, (*cap *= 2) * sizeof(**v));

					if (!nv) {
						fclose(f);
						closedir(d);
						return -ENOMEM;
					}
					*v = nv;
				}
				(*v)[(*n)++] = c;
			}
		}
		fclose(f);
	}
	closedir(d);
	return 0;
}

int tree_pids(pid_t root, pid_t **out, int *n)
{
	int cap = 16, i, ret;
	pid_t *v = malloc(cap * sizeof(*v));

	if (!v)
		return -ENOMEM;
	v[0] = root;
	*n = 1;
	/* breadth first; a process gone meanwhile is skipped */
	for (i = 0; i < *n; i++) {
		ret = add_children(v[i], &v, n, &cap);
		if (ret == -ENOMEM || (i == 0 && ret)) {
			free(v);
			return ret;
		}
	}
	*out = v;
	return 0;
}

/* the four uids of a task ("/proc/PID/task/TID/status") */
static int task_uids(const char *status, unsigned uids[4])
{
	char line[256];
	int ret = -ESRCH;
	FILE *f;

	f = fopen(status, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Uid:", 4)) {
			if (sscanf(line + 4, "%u %u %u %u", &uids[0], &uids[1], &uids[2],
				   &uids[3]) == 4)
				ret = 0;
			break;
		}
	fclose(f);
	return ret;
}

/*
 * Every thread of pid has all four uids == owner.  Credentials are per
 * thread: a process whose main thread is the user's may have another that
 * is still root's.  0, -EPERM (why says which), or -errno.
 */
static int proc_owned(pid_t root, pid_t pid, uid_t owner, char *why, size_t size)
{
	char path[300];
	struct dirent *de;
	unsigned u[4];
	int ret = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;	/* exited meanwhile: owns nothing */
	while (!ret && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", pid, de->d_name);
		ret = task_uids(path, u);
		if (ret == -ENOENT) {
			ret = 0;
			continue;
		}
		if (ret)
			snprintf(why, size, "tree %d: pid %d: can't read its uids: %s", root, pid,
				 strerror(-ret));
		else if (u[0] != owner || u[1] != owner || u[2] != owner || u[3] != owner) {
			snprintf(why, size, "tree %d: pid %d (thread %s) has uids %u %u %u %u, "
				 "not owner %u", root, pid, de->d_name, u[0], u[1], u[2], u[3],
				 (unsigned)owner);
			ret = -EPERM;
		}
	}
	closedir(d);
	return ret;
}

int auth_tree(pid_t root, uid_t owner, char *why, size_t size)
{
	pid_t *pids;
	int n, i, ret;

	ret = tree_pids(root, &pids, &n);
	if (ret) {
		snprintf(why, size, "tree %d: %s", root,
			 ret == -ENOENT ? "no such process" : strerror(-ret));
		return ret == -ENOENT ? -ESRCH : ret;
	}
	for (i = 0; i < n && !ret; i++)
		ret = proc_owned(root, pids[i], owner, why, size);
	free(pids);
	return ret;
}
