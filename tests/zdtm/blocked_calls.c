/*
 * Threads blocked in the middle of calls at checkpoint time: accept() on a
 * TCP listener, epoll_wait() on an eventfd, and connect() on a UNIX listener
 * whose backlog is full (another connection waits there, not accepted).
 * After restore each call completes when its event comes: the accept gets
 * the new connection, epoll_wait the eventfd, and the connect its turn.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "zdtmlib.h"

static int tcp_l, ep, efd, unix_l;
static struct sockaddr_un uaddr;
static socklen_t ulen;
static volatile int in_connect;

static void *do_accept(void *arg)
{
	return (void *)(long)(accept(tcp_l, NULL, NULL) >= 0);
}

/* epoll_wait is never restarted: a ptrace stop makes it return EINTR, as signals do */
static void *do_epoll(void *arg)
{
	struct epoll_event ev;
	int n;

	while ((n = epoll_wait(ep, &ev, 1, -1)) < 0 && errno == EINTR)
		;
	return (void *)(long)(n == 1 && ev.data.u32 == 77);
}

static void *do_connect(void *arg)
{
	int sk = socket(AF_UNIX, SOCK_STREAM, 0);

	in_connect = 1;
	return (void *)(long)(sk >= 0 && !connect(sk, (struct sockaddr *)&uaddr, ulen));
}

static int unix_client(void)
{
	int sk = socket(AF_UNIX, SOCK_STREAM, 0);

	check(sk >= 0 && !connect(sk, (struct sockaddr *)&uaddr, ulen), "unix connect");
	return sk;
}

int main(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 77 };
	socklen_t sl = sizeof(sa);
	pthread_t th[3];
	void *res;
	int c, i;

	zdtm_init("blocked_calls");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	tcp_l = socket(AF_INET, SOCK_STREAM, 0);
	check(tcp_l >= 0 && !bind(tcp_l, (struct sockaddr *)&sa, sizeof(sa)) && !listen(tcp_l, 4) &&
	      !getsockname(tcp_l, (struct sockaddr *)&sa, &sl), "tcp listener");
	ep = epoll_create1(0);
	efd = eventfd(0, 0);
	check(ep >= 0 && efd >= 0 && !epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), "epoll");
	uaddr.sun_family = AF_UNIX;
	snprintf(uaddr.sun_path + 1, sizeof(uaddr.sun_path) - 1, "crd-zdtm-blocked-%d", getpid());
	ulen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(uaddr.sun_path + 1);
	unix_l = socket(AF_UNIX, SOCK_STREAM, 0);
	check(unix_l >= 0 && !bind(unix_l, (struct sockaddr *)&uaddr, ulen) && !listen(unix_l, 0),
	      "unix listener");
	c = unix_client();	/* fills the backlog: the next connect() waits */
	check(!pthread_create(&th[0], NULL, do_accept, NULL) &&
	      !pthread_create(&th[1], NULL, do_epoll, NULL) &&
	      !pthread_create(&th[2], NULL, do_connect, NULL), "threads");
	while (!in_connect)
		usleep(1000);
	usleep(100000);		/* all three are in their calls now */
	zdtm_ready();
	zdtm_wait();
	i = socket(AF_INET, SOCK_STREAM, 0);
	check(i >= 0 && !connect(i, (struct sockaddr *)&sa, sizeof(sa)), "tcp connect");
	check(eventfd_write(efd, zdtm_corrupt() ? 0 : 1) == 0, "eventfd");
	check(accept(unix_l, NULL, NULL) >= 0 && accept(unix_l, NULL, NULL) >= 0,
	      "the unix listener lost a connection");
	for (i = 0; i < 3; i++) {
		if (zdtm_corrupt() && i == 1) {
			/* nothing was written to the eventfd: that thread never returns */
			check(0, "epoll_wait has nothing to return (corrupt mode)");
		}
		check(!pthread_join(th[i], &res) && res, "thread %d's call failed", i);
	}
	close(c);
	return zdtm_pass();
}
