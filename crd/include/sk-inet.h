/* What TCP and UDP sockets share: addresses and the socket behind a task's fd. */
#ifndef CRD_SK_INET_H
#define CRD_SK_INET_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

/* Is that socket AF_INET/AF_INET6 of this type and protocol?  1, 0 or -errno. */
int inet_probe(pid_t pid, int fd, int type, int proto);
/* Address bytes (4 or 16) and port of ss into b / port. */
int inet_save_addr(struct arena *a, ProtobufCBinaryData *b, uint32_t *port,
		   const struct sockaddr_storage *ss);
/* The sockaddr of family for those bytes and port; returns its length. */
socklen_t inet_make_addr(struct sockaddr_storage *ss, uint32_t family,
			 const ProtobufCBinaryData *a, uint32_t port);

#endif
