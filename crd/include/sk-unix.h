/* UNIX sockets: found with sock_diag, their queues read without consuming them. */
#ifndef CRD_SK_UNIX_H
#define CRD_SK_UNIX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

struct unix_diag_info {
	uint32_t ino;
	uint8_t type;
	uint8_t state;
	uint32_t peer;
	uint32_t shutdown;
	uint32_t rqlen;		/* listeners: connections waiting in the accept queue */
	uint32_t vfs_ino;	/* bound to a path: its socket file's inode */
	uint32_t *icons;	/* listeners: connections not accepted yet (their inodes) */
	uint32_t nicons;
	char name[108];		/* "" for unnamed sockets */
	struct unix_diag_info *next;
};

struct unix_table {
	struct unix_diag_info *all;	/* every UNIX socket of the host */
	bool loaded;
};

/* What sock_diag knows of socket ino, loaded on first use; NULL if nothing. */
const struct unix_diag_info *unix_lookup(struct unix_table *t, uint32_t ino);
void unix_table_free(struct unix_table *t);

/*
 * Fill e for the socket that pid has at fd: a connected socket (id, type,
 * peer, shutdown, queue) or a listener with an empty accept queue.  Anything
 * else is a clear error naming pid, fd and why.
 */
/*
 * Files in flight: peeking installs them here; on_fds(arg, e, msg, fds, n) is
 * told of those that came with queue entry msg of e and owns them from then.
 */
struct unix_scm_cb {
	int (*on_fds)(void *arg, Crd__UnixSkEntry *e, uint32_t msg, const int *fds, int n);
	void *arg;
};

int dump_unix_sk(const struct unix_scm_cb *cb, struct arena *a, struct unix_table *t,
		 pid_t pid, int fd, uint32_t ino,
		 Crd__UnixSkEntry *e);

/*
 * Restore: a socketpair per pair of connected entries (a bound name of a
 * connected socket is not kept), queues refilled, shutdowns applied; listeners
 * bound and listening again.  fds[i] gets the socket of sks[i].
 */
int restore_unix_sks(Crd__UnixSkEntry **sks, size_t n, int *fds);
/* The queues with files in flight, once file_fd(arg, file id) gives every file. */
int unix_refill_scm(Crd__UnixSkEntry **sks, size_t n, const int *fds,
		    int (*file_fd)(void *arg, uint64_t id), void *arg);

#endif
