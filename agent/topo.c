/*
 * CPU placement with hwloc.  At FREEZE the binding of each tree's root is
 * recorded (Tree.cpuset, an hwloc list of the PUs of the node it ran on).
 * After a restore, possibly on another kind of node, the same relative
 * placement is applied: the i-th PU of the old binding becomes core
 * (i mod cores) of this node, with all its PUs.  A binding that covered the
 * whole old node therefore covers this one.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>
#include <hwloc/glibc-sched.h>

#include "agent.h"

struct topo {
	hwloc_topology_t t;
	int cores;
	int numa;
};

int topo_open(struct topo **out)
{
	struct topo *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	if (hwloc_topology_init(&t->t) || hwloc_topology_load(t->t)) {
		alog("hwloc: can't load this node's topology\n");
		free(t);
		return -EIO;
	}
	t->cores = hwloc_get_nbobjs_by_type(t->t, HWLOC_OBJ_CORE);
	if (t->cores <= 0)
		t->cores = hwloc_get_nbobjs_by_type(t->t, HWLOC_OBJ_PU);
	t->numa = hwloc_get_nbobjs_by_type(t->t, HWLOC_OBJ_NUMANODE);
	if (t->numa <= 0)
		t->numa = 1;
	*out = t;
	return 0;
}

void topo_close(struct topo *t)
{
	if (!t)
		return;
	hwloc_topology_destroy(t->t);
	free(t);
}

void topo_summary(const struct topo *t, char *buf, size_t size)
{
	snprintf(buf, size, "cores=%d numa=%d", t->cores, t->numa);
}

char *topo_get_binding(const struct topo *t, pid_t pid)
{
	hwloc_bitmap_t set = hwloc_bitmap_alloc();
	char *s = NULL;

	if (!set)
		return NULL;
	if (hwloc_get_proc_cpubind(t->t, pid, set, 0) == 0)
		hwloc_bitmap_list_asprintf(&s, set);
	else
		alog("tree %d: hwloc can't read its CPU binding: %m\n", pid);
	hwloc_bitmap_free(set);
	return s;
}

/* the old binding, mapped: PU number i -> core (i mod cores) */
static int map_cpuset(const struct topo *t, const char *cpuset, hwloc_bitmap_t out)
{
	hwloc_bitmap_t old = hwloc_bitmap_alloc();
	hwloc_obj_t core;
	int i;

	if (!old)
		return -ENOMEM;
	if (hwloc_bitmap_list_sscanf(old, cpuset) || hwloc_bitmap_iszero(old)) {
		hwloc_bitmap_free(old);
		return -EINVAL;
	}
	hwloc_bitmap_zero(out);
	hwloc_bitmap_foreach_begin(i, old) {
		core = hwloc_get_obj_by_type(t->t, HWLOC_OBJ_CORE, i % t->cores);
		if (!core)
			core = hwloc_get_obj_by_type(t->t, HWLOC_OBJ_PU, i % t->cores);
		if (core)
			hwloc_bitmap_or(out, out, core->cpuset);
	} hwloc_bitmap_foreach_end();
	hwloc_bitmap_free(old);
	return hwloc_bitmap_iszero(out) ? -EINVAL : 0;
}

/* sched_setaffinity() on every thread of pid */
static int bind_threads(pid_t pid, const cpu_set_t *cs)
{
	char path[64];
	struct dirent *de;
	int ret = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' &&
		    sched_setaffinity(atoi(de->d_name), sizeof(*cs), cs) && errno != ESRCH)
			ret = -errno;
	closedir(d);
	return ret;
}

int topo_rebind(const struct topo *t, pid_t root, const char *cpuset, char *why, size_t size)
{
	hwloc_bitmap_t set = hwloc_bitmap_alloc();
	char *list = NULL;
	pid_t *pids = NULL;
	cpu_set_t cs;
	int n = 0, i, ret;

	if (!set)
		return -ENOMEM;
	ret = map_cpuset(t, cpuset, set);
	if (ret) {
		snprintf(why, size, "tree %d: bad cpuset '%s'", root, cpuset);
		goto out;
	}
	hwloc_cpuset_to_glibc_sched_affinity(t->t, set, &cs, sizeof(cs));
	ret = tree_pids(root, &pids, &n);
	for (i = 0; !ret && i < n; i++)
		ret = bind_threads(pids[i], &cs);
	hwloc_bitmap_list_asprintf(&list, set);
	if (ret)
		snprintf(why, size, "tree %d: can't bind to %s: %s", root, list ?: "?",
			 strerror(-ret));
	else
		alog("tree %d: %d processes bound to %s (dumped on %s)\n", root, n, list ?: "?",
		     cpuset);
	free(list);
	free(pids);
out:
	hwloc_bitmap_free(set);
	return ret;
}
