/*
 * Network lock: while a tree's TCP connections are frozen (dumped, or
 * restored but not yet resumed), nftables drops every packet of them in both
 * directions, so no side acknowledges or accepts data that the other side's
 * image would not hold, and a killed endpoint sends no reset.
 *
 * The rules live in one table per tree, "inet crd_lock_PID" with PID the
 * tree's root, in the network namespace of the tree, so that a later restore
 * (same PIDs) or `crd net-unlock PID` finds and removes them.
 */
#ifndef CRD_NETLOCK_H
#define CRD_NETLOCK_H

#include <stddef.h>
#include <sys/types.h>

#include "crd.pb-c.h"

/*
 * Replace the lock table of tree tag in the namespace netns_fd (-1: ours)
 * with one dropping the packets of every established connection in sks.
 */
int netlock_lock(int netns_fd, pid_t tag, Crd__TcpSkEntry **sks, size_t n);
/* Remove it; no table is not an error. */
int netlock_unlock(int netns_fd, pid_t tag);

/* Can we make and remove an nftables table here?  0 or -errno. */
int netlock_probe(void);

#endif
