/*
 * Asking Slurm through its commands (scontrol), as any user of the job can:
 * crjob links no libslurm, so it works with whatever Slurm the node runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crjob.h"

/* one line of `scontrol ARGS`'s output per call of fn; -EIO if scontrol failed */
int scontrol(const char *args, int (*fn)(const char *line, void *arg), void *arg)
{
	char cmd[8192], line[8192];
	FILE *p;
	int ret = 0, st;

	snprintf(cmd, sizeof(cmd), "scontrol %s", args);
	p = popen(cmd, "r");
	if (!p)
		return -errno;
	while (!ret && fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			ret = fn(line, arg);
	}
	st = pclose(p);
	if (!ret && st) {
		fprintf(stderr, "crjob: `%s` failed (status %#x)\n", cmd, st);
		ret = -EIO;
	}
	return ret;
}

/*
 * "2(x3),1" (SLURM_JOB_CPUS_PER_NODE, SLURM_TASKS_PER_NODE) as one count per
 * node in v[max]: how many nodes, or -EINVAL.
 */
int slurm_counts(const char *s, long *v, int max)
{
	int n = 0;

	while (s && *s) {
		char *end;
		long c = strtol(s, &end, 10), rep = 1;

		if (end == s || c < 0)
			return -EINVAL;
		if (!strncmp(end, "(x", 2)) {
			rep = strtol(end + 2, &end, 10);
			if (*end++ != ')' || rep <= 0)
				return -EINVAL;
		}
		while (rep-- > 0) {
			if (n == max)
				return -EINVAL;
			v[n++] = c;
		}
		if (*end && *end != ',')
			return -EINVAL;
		s = *end ? end + 1 : end;
	}
	return n;
}

/* PREFIX[RANGES]SUFFIX with RANGES "1-3,07-09,12": each name to fn */
static int expand_item(const char *item, size_t len, int (*fn)(const char *name, void *arg),
		       void *arg)
{
	const char *lb = memchr(item, '[', len), *rb, *r;
	char name[512];
	int ret;

	if (!lb) {
		if (len >= sizeof(name))
			return -EINVAL;
		snprintf(name, sizeof(name), "%.*s", (int)len, item);
		return fn(name, arg);
	}
	rb = memchr(lb, ']', len - (lb - item));
	if (!rb || memchr(rb, '[', len - (rb - item)))
		return -EINVAL;	/* several bracket groups: left to scontrol */
	for (r = lb + 1; r < rb; ) {
		char *end;
		long lo = strtol(r, &end, 10), hi = lo, i;
		int width = end - r;

		if (end == r)
			return -EINVAL;
		if (*end == '-') {
			hi = strtol(end + 1, &end, 10);
			if (hi < lo)
				return -EINVAL;
		}
		if (end != rb && *end != ',')
			return -EINVAL;
		for (i = lo; i <= hi; i++) {
			if ((size_t)snprintf(name, sizeof(name), "%.*s%0*ld%.*s", (int)(lb - item),
					     item, width, i, (int)(len - (rb + 1 - item)), rb + 1) >=
			    sizeof(name))
				return -EINVAL;
			ret = fn(name, arg);
			if (ret)
				return ret;
		}
		r = end == rb ? rb : end + 1;
	}
	return 0;
}

/*
 * The node names of a Slurm hostlist ("node[1-3,7],login1") in its order,
 * each to fn; scontrol's `show hostnames` for what this does not parse.
 */
int slurm_hostnames(const char *list, int (*fn)(const char *name, void *arg), void *arg)
{
	const char *p = list, *start = list;
	char args[8192];
	int depth = 0, ret;

	if (!list || !*list || strchr(list, '\''))
		return -EINVAL;
	for (;; p++) {
		if (*p == '[')
			depth++;
		else if (*p == ']')
			depth--;
		if ((*p == ',' && !depth) || !*p) {
			ret = p > start ? expand_item(start, p - start, fn, arg) : 0;
			if (ret == -EINVAL)
				break;
			if (ret)
				return ret;
			if (!*p)
				return 0;
			start = p + 1;
		}
	}
	snprintf(args, sizeof(args), "show hostnames '%s'", list);
	return scontrol(args, fn, arg);
}
