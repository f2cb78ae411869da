/* UDP sockets: see crd/sk-udp.c */
#ifndef CRD_SK_UDP_H
#define CRD_SK_UDP_H

#include <sys/types.h>

#include "arena.h"
#include "crd.pb-c.h"

/* Is the socket pid holds at fd a UDP socket?  1 yes, 0 no, -errno. */
int udp_probe(pid_t pid, int fd);
int dump_udp_sk(struct arena *a, pid_t pid, int fd, uint64_t ino, Crd__UdpSkEntry *e);
/* A new socket bound (and connected) as e was, or -errno. */
int restore_udp_sk(const Crd__UdpSkEntry *e);

#endif
