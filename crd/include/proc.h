/* Parsers for /proc files that several parts of crd read. */
#ifndef CRD_PROC_H
#define CRD_PROC_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_vma {
	uint64_t start;
	uint64_t end;
	uint32_t prot;		/* PROT_* */
	bool shared;		/* 's' in maps */
	uint64_t pgoff;
	unsigned int dev_major;
	unsigned int dev_minor;
	uint64_t ino;
	char path[PATH_MAX];	/* "" for anonymous, "[heap]", "[stack]", ... */
	bool deleted;		/* path ended in " (deleted)" (stripped from path) */
};

/*
 * Call fn for every line of /proc/PID/maps (pid 0: the caller).  Stops at the
 * first non-zero return of fn and returns it; -errno if maps can't be read.
 */
int proc_parse_maps(pid_t pid, int (*fn)(const struct proc_vma *vma, void *arg), void *arg);

#endif
