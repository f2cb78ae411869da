/* /proc parsers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "proc.h"
#include "util.h"

static int parse_maps_line(char *line, struct proc_vma *v)
{
	char perms[5];
	int path_off = 0;
	size_t len;

	if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu %n", &v->start, &v->end, perms,
		   &v->pgoff, &v->dev_major, &v->dev_minor, &v->ino, &path_off) < 7)
		return -EINVAL;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	v->shared = perms[3] == 's';
	snprintf(v->path, sizeof(v->path), "%s", path_off ? line + path_off : "");
	len = strlen(v->path);
	v->deleted = len > 10 && !strcmp(v->path + len - 10, " (deleted)");
	if (v->deleted)
		v->path[len - 10] = '\0';
	return 0;
}

int proc_parse_maps(pid_t pid, int (*fn)(const struct proc_vma *vma, void *arg), void *arg)
{
	struct proc_vma *v;
	char path[64], *buf, *line, *next;
	ssize_t len;
	int ret = 0;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	len = read_file(path, &buf);
	if (len < 0)
		return len;
	v = malloc(sizeof(*v));
	if (!v) {
		free(buf);
		return -ENOMEM;
	}
	for (line = buf; line && *line && !ret; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		ret = parse_maps_line(line, v);
		if (!ret)
			ret = fn(v, arg);
	}
	free(v);
	free(buf);
	return ret;
}
