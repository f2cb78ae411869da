/* eventfd, signalfd, timerfd, epoll: see crd/files-anon.c */
#ifndef CRD_FILES_ANON_H
#define CRD_FILES_ANON_H

#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

/* Fill e from the fdinfo text of an anon_inode fd; -ENOTSUP for other kinds. */
int dump_anon_fd(struct arena *a, pid_t pid, int fd, const char *link, const char *info,
		 Crd__FileEntry *e);
/* A new fd with e's state, or -errno. */
int create_anon_fd(const Crd__FileEntry *e);
/* Register e's targets with the epoll at epfd, in the process they belong to. */
int restore_epoll_targets(const Crd__FileEntry *e, int epfd, uint32_t pid);

#endif
