/* Pseudo-terminal pairs inside the tree: see crd/tty.c */
#ifndef CRD_TTY_H
#define CRD_TTY_H

#include <stdbool.h>
#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

/* Is path a pty end (/dev/ptmx, /dev/pts/N)? */
int tty_is_pty(const char *path);
/* Fill e for the pty end pid holds at fd. */
int dump_tty(struct arena *a, pid_t pid, int fd, const char *path, Crd__FileEntry *e);
/*
 * Every slave's master must be in the tree too, but for the caller's
 * terminal with shell_job (marked tty_external).
 */
int tty_check_pairs(Crd__FileEntry **files, size_t n, bool shell_job);

struct tty_restore;
/*
 * A new pair for every dumped master; the caller's terminal (fd 0) for the
 * external one with shell_job.  NULL after logging on failure.
 */
struct tty_restore *tty_restore_new(const Crd__Inventory *inv, bool shell_job);
/* A new fd for the pty end e (its new master, or a new open of its new slave). */
int tty_open(struct tty_restore *t, const Crd__FileEntry *e);
void tty_restore_free(struct tty_restore *t);

/* Warn when session leader pid has a controlling terminal: it is not restored. */
void tty_check_ctty(pid_t pid);

#endif
