/*
 * File descriptors, both sides.
 *
 * Dump: every fd of every process is resolved to an open file description
 * (FileEntry, shared when processes or fds share one, found with kcmp) and, for
 * pipes, the pipe itself (PipeEntry, with the bytes in its buffer).
 *
 * Restore: the orchestrator opens every description once, before any process
 * of the tree exists, at fds >= base; the processes inherit them, and each
 * dup2()s its own into place.  Everything restore-internal lives at >= base and
 * the restorer blob closes that range last, so the tree sees exactly its fds.
 */
#ifndef CRD_FILES_H
#define CRD_FILES_H

#include <stdbool.h>
#include <sys/types.h>

#include "crd.pb-c.h"

struct file_table;

struct file_table *file_table_new(void);
void file_table_free(struct file_table *ft);
/* The tree runs on the caller's terminal: its slave fds without a master are fine. */
void file_table_set_shell_job(struct file_table *ft, bool shell_job);
/*
 * Let go of the TCP connections held in repair mode: with resume they go on
 * (the tree runs on), without they close silently (the tree is gone).
 */
void file_table_close_sockets(struct file_table *ft, bool resume);
/* UNIX sockets connected outside the tree that the dump may keep (dump --external). */
void file_table_set_external(struct file_table *ft, const char **ext, int n);
/* Dump the files in flight in the tree's UNIX sockets (after every task's fds). */
int file_table_dump_inflight(struct file_table *ft);
/* Drop the network lock taken for the tree's TCP connections, if any. */
int file_table_net_unlock(struct file_table *ft);
bool file_table_net_locked(const struct file_table *ft);

/*
 * Collect the fds of process pid (stopped, part of the dumped tree) into
 * te->fds / n_fds, adding the descriptions and pipes it uses to ft.  An fd of
 * a kind crd can't dump yet is a clear error naming pid, fd and what it is.
 */
int dump_task_fds(struct file_table *ft, pid_t pid, Crd__TaskEntry *te);

/*
 * Call fn for each open file without a path (deleted file, memfd) ft found,
 * with a (pid, fd) that holds it: its contents go into a shmem image.
 */
int file_table_for_each_shmem(struct file_table *ft,
			      int (*fn)(void *arg, pid_t pid, int fd, const Crd__FileEntry *e),
			      void *arg);

/* Point inv->files and inv->pipes at what ft collected (ft still owns them). */
int file_table_fill_inventory(struct file_table *ft, Crd__Inventory *inv, pid_t root);

struct fd_restore;

/*
 * Orchestrator, before creating the tree: check that every file exists as
 * dumped (regular files: size unchanged, else a clear error naming the file),
 * open every description and create every pipe (with its buffered data) at
 * fds >= base.  Files without a path are opened anew from the memfd that
 * shmem_fd(arg, id) gives.  Returns 0 or -errno.
 */
int fdr_prepare(const Crd__Inventory *inv, int base, bool shell_job,
		int (*shmem_fd)(const void *arg, uint64_t id), const void *arg,
		struct fd_restore **out);

/* One past the highest fd fdr_prepare() used. */
int fdr_end(const struct fd_restore *fr);

/*
 * In a restored process (after fork, before the restorer blob): give it
 * exactly the fds of te, with their close-on-exec flags, and close every other
 * fd below base.  fds >= base stay open for the restore's own use.
 */
int fdr_install(const struct fd_restore *fr, const Crd__TaskEntry *te, int base);

void fdr_free(struct fd_restore *fr);

#endif
