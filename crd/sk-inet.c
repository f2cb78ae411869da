/* Helpers shared by the TCP and UDP socket code. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sk-inet.h"
#include "util.h"

int inet_probe(pid_t pid, int fd, int type, int proto)
{
	int sk = task_fd_dup(pid, fd), d = 0, t = 0, p = 0;
	socklen_t l = sizeof(int);

	if (sk < 0)
		return sk;
	getsockopt(sk, SOL_SOCKET, SO_DOMAIN, &d, &l);
	getsockopt(sk, SOL_SOCKET, SO_TYPE, &t, &l);
	getsockopt(sk, SOL_SOCKET, SO_PROTOCOL, &p, &l);
	close(sk);
	return (d == AF_INET || d == AF_INET6) && t == type && p == proto;
}

int inet_save_addr(struct arena *a, ProtobufCBinaryData *b, uint32_t *port,
		   const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *in = (const void *)ss;
	const struct sockaddr_in6 *in6 = (const void *)ss;
	size_t len = ss->ss_family == AF_INET ? 4 : 16;

	*port = ntohs(ss->ss_family == AF_INET ? in->sin_port : in6->sin6_port);
	b->data = arena_alloc(a, len);
	if (!b->data)
		return -ENOMEM;
	memcpy(b->data, ss->ss_family == AF_INET ? (const void *)&in->sin_addr
						 : (const void *)&in6->sin6_addr, len);
	b->len = len;
	return 0;
}

socklen_t inet_make_addr(struct sockaddr_storage *ss, uint32_t family,
			 const ProtobufCBinaryData *a, uint32_t port)
{
	struct sockaddr_in *in = (void *)ss;
	struct sockaddr_in6 *in6 = (void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, a->data, a->len < 4 ? a->len : 4);
		return sizeof(*in);
	}
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	memcpy(&in6->sin6_addr, a->data, a->len < 16 ? a->len : 16);
	return sizeof(*in6);
}
