/* TCP sockets: listening ones, and established ones through TCP_REPAIR. */
#ifndef CRD_SK_TCP_H
#define CRD_SK_TCP_H

#include <stdbool.h>
#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

struct tcp_table;

struct tcp_table *tcp_table_new(void);
/*
 * Close what the dump holds.  With resume the connections leave repair mode
 * first (the tree runs on); without, they are closed still in repair mode,
 * which sends nothing: the peer never sees a reset.
 */
void tcp_table_free(struct tcp_table *t, bool resume);

/* Is the socket pid holds at fd a TCP socket?  1 yes, 0 no, -errno. */
int tcp_probe(pid_t pid, int fd);
/* Note the TCP socket pid holds at fd; e is filled by tcp_dump_all(). */
int tcp_collect(struct tcp_table *t, struct arena *a, pid_t pid, int fd, uint64_t ino,
		Crd__TcpSkEntry *e);
/* All established connections into repair mode first, then read them all. */
int tcp_dump_all(struct tcp_table *t, struct arena *a);

/* Restore every socket; fds[i] gets the socket of sks[i]. */
int restore_tcp_sks(Crd__TcpSkEntry **sks, size_t n, int *fds);

#endif
