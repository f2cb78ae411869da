/*
 * UDP sockets: the address a socket is bound to and the one it is connected
 * to, so that a server keeps its port and a client its peer.  Queued
 * datagrams are not carried over: UDP promises no delivery, and an
 * application using it copes with a lost datagram.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sk-inet.h"
#include "util.h"
#include "sk-udp.h"

int udp_probe(pid_t pid, int fd)
{
	return inet_probe(pid, fd, SOCK_DGRAM, IPPROTO_UDP);
}

int dump_udp_sk(struct arena *a, pid_t pid, int fd, uint64_t ino, Crd__UdpSkEntry *e)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	int sk = task_fd_dup(pid, fd), val, queued = 0, ret;

	if (sk < 0)
		return sk;
	e->id = ino;
	ret = getsockname(sk, (struct sockaddr *)&ss, &l) ? -errno : 0;
	if (!ret) {
		e->family = ss.ss_family;
		ret = inet_save_addr(a, &e->src_addr, &e->src_port, &ss);
	}
	l = sizeof(ss);
	if (!ret && !getpeername(sk, (struct sockaddr *)&ss, &l)) {
		e->has_dst_port = true;
		ret = inet_save_addr(a, &e->dst_addr, &e->dst_port, &ss);
		e->has_dst_addr = !ret;
	}
	l = sizeof(val);
	if (!ret && !getsockopt(sk, SOL_SOCKET, SO_REUSEADDR, &val, &l)) {
		e->has_reuseaddr = true;
		e->reuseaddr = val;
	}
	if (!ret && e->family == AF_INET6 &&
	    !getsockopt(sk, IPPROTO_IPV6, IPV6_V6ONLY, &val, &l)) {
		e->has_v6only = true;
		e->v6only = val;
	}
	if (!ret && !ioctl(sk, FIONREAD, &queued) && queued)
		pr_warn("pid %d fd %d: a queued UDP datagram is dropped\n", pid, fd);
	if (ret)
		pr_err("pid %d fd %d: can't inspect the UDP socket: %s\n", pid, fd, strerror(-ret));
	close(sk);
	return ret;
}

int restore_udp_sk(const Crd__UdpSkEntry *e)
{
	struct sockaddr_storage ss;
	int sk = socket(e->family, SOCK_DGRAM, 0), one = 1, ret = 0;
	socklen_t l;

	if (sk < 0)
		return -errno;
	if (e->has_reuseaddr && e->reuseaddr)
		setsockopt(sk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (e->has_v6only && e->family == AF_INET6)
		setsockopt(sk, IPPROTO_IPV6, IPV6_V6ONLY, &(int){ e->v6only }, sizeof(int));
	if (e->src_port) {
		l = inet_make_addr(&ss, e->family, &e->src_addr, e->src_port);
		if (bind(sk, (struct sockaddr *)&ss, l))
			ret = -errno;
	}
	if (!ret && e->has_dst_addr) {
		l = inet_make_addr(&ss, e->family, &e->dst_addr, e->dst_port);
		if (connect(sk, (struct sockaddr *)&ss, l))
			ret = -errno;
	}
	if (ret) {
		pr_err("UDP socket %lu (port %u): can't bind or connect it again: %s\n", e->id,
		       e->src_port, strerror(-ret));
		close(sk);
		return ret;
	}
	return sk;
}
