#ifndef CRD_UTIL_H
#define CRD_UTIL_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#ifndef PAGE_SIZE
#define PAGE_SIZE	4096UL
#endif
#define PAGE_ALIGN(x)	(((x) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))

/* Full reads and writes; return bytes done (short only at EOF) or -errno. */
ssize_t read_all(int fd, void *buf, size_t len);
ssize_t pread_all(int fd, void *buf, size_t len, off_t off);
int write_all(int fd, const void *buf, size_t len);
ssize_t writev_all(int fd, const struct iovec *iov, int cnt);

/*
 * Read a whole (proc) file into a NUL-terminated malloc'ed buffer.
 * Returns the length or -errno; *bufp is set only on success.
 */
ssize_t read_file(const char *path, char **bufp);

/* A copy of the fd that process pid has open as fd (pidfd_getfd), or -errno. */
int task_fd_dup(pid_t pid, int fd);

/* Parse a decimal integer of a whole string; -EINVAL if it is not one. */
int parse_int(const char *s, long *val);

/*
 * Run the user's action script (CRD_ACTION=action, CRD_PID=pid in its
 * environment and action as its argument); NULL script: nothing.  0 or
 * -errno, -ECANCELED when the script failed.
 */
/*
 * Run the user's action script (CRD_ACTION=action, CRD_PID=pid in its
 * environment and action as its argument); NULL script: nothing.  0 or
 * -errno, -ECANCELED when the script failed.
 */
int run_action_script(const char *script, const char *action, pid_t pid);

/* s as a JSON string (null for NULL): crd show, crjob --json */
void json_str(FILE *f, const char *s);

#endif
