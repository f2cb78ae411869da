/*
 * TCP and UDP on loopback inside the tree.  A UDP socket bound to a port
 * keeps it, a connected one its peer.  TCP: a listener, and a connection between the
 * parent and its child with data queued both ways, more than the receiver's
 * buffer holds (so some was never sent).  After restore all of it arrives in
 * order, new data flows both ways, and the listener accepts a new
 * connection.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

#define BIG (4 << 20)

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + i / 251);
}

/* Read exactly len bytes and check them against the pattern from off. */
static void read_pattern(int fd, size_t off, size_t len, const char *who)
{
	static unsigned char buf[65536];
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf, len - got < sizeof(buf) ? len - got : sizeof(buf));

		check(n > 0, "%s: read returned %zd after %zu of %zu bytes", who, n, got, len);
		for (ssize_t i = 0; i < n; i++)
			check(buf[i] == pattern(off + got + i), "%s: byte %zu differs", who,
			      off + got + i);
		got += n;
	}
}

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK		72
#endif
#define SOCK_RCVBUF_LOCK	2

static int sockopt(int sk, int opt)
{
	socklen_t l = sizeof(int);
	int v = -1;

	getsockopt(sk, SOL_SOCKET, opt, &v, &l);
	return v;
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	static unsigned char big[BIG];
	struct sockaddr_in ua;
	int lsk, c, s, st, one = 1, us, uc;
	size_t sent = 0, i;
	pid_t child;

	zdtm_init("tcp_pair");
	for (i = 0; i < BIG; i++)
		big[i] = pattern(i);
	lsk = socket(AF_INET, SOCK_STREAM, 0);
	check(lsk >= 0 && !setsockopt(lsk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) &&
	      !bind(lsk, (struct sockaddr *)&a, sizeof(a)) && !listen(lsk, 8) &&
	      !getsockname(lsk, (struct sockaddr *)&a, &al), "listen");
	/* UDP: a bound server and a client connected to it */
	us = socket(AF_INET, SOCK_DGRAM, 0);
	uc = socket(AF_INET, SOCK_DGRAM, 0);
	ua = a;
	ua.sin_port = 0;
	al = sizeof(ua);
	check(us >= 0 && uc >= 0 && !bind(us, (struct sockaddr *)&ua, sizeof(ua)) &&
	      !getsockname(us, (struct sockaddr *)&ua, &al) &&
	      !connect(uc, (struct sockaddr *)&ua, sizeof(ua)), "UDP");
	child = fork();
	if (child == 0) {
		int rcv = 96 << 10, rcv_before;

		c = socket(AF_INET, SOCK_STREAM, 0);
		/* a receive buffer the program fixed stays fixed, at least as large */
		check(!setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) &&
		      !connect(c, (struct sockaddr *)&a, sizeof(a)), "connect");
		rcv_before = sockopt(c, SO_RCVBUF);
		check(write(c, zdtm_corrupt() ? "hello parenT" : "hello parent", 12) == 12, "write");
		zdtm_wait();
		check(sockopt(c, SO_BUF_LOCK) == SOCK_RCVBUF_LOCK && sockopt(c, SO_RCVBUF) >= rcv_before,
		      "fixed receive buffer: lock %d size %d, was %d", sockopt(c, SO_BUF_LOCK),
		      sockopt(c, SO_RCVBUF), rcv_before);
		read_pattern(c, 0, BIG, "child");
		check(write(c, "bye", 3) == 3, "write after restore");
		return 0;
	}
	s = accept(lsk, NULL, NULL);
	check(s >= 0, "accept");
	/* fill the connection until the kernel takes no more */
	fcntl(s, F_SETFL, O_NONBLOCK);
	while (sent < BIG) {
		ssize_t n = write(s, big + sent, BIG - sent);

		if (n <= 0)
			break;
		sent += n;
	}
	usleep(100000);
	zdtm_ready();
	zdtm_wait();
	fcntl(s, F_SETFL, 0);
	/* buffers the kernel sized go on growing with the connection: not fixed */
	check(sockopt(s, SO_BUF_LOCK) == 0, "autotuned buffers fixed by the restore: lock %d",
	      sockopt(s, SO_BUF_LOCK));
	kill(child, SIGUSR2);
	{
		char buf[16];

		check(read(s, buf, 12) == 12 && !memcmp(buf, "hello parent", 12), "queued data");
		check(write(s, big + sent, BIG - sent) == (ssize_t)(BIG - sent), "rest of the data");
		check(read(s, buf, 3) == 3 && !memcmp(buf, "bye", 3), "data after restore");
	}
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child failed");
	{
		char buf[8];

		check(send(uc, "dgram", 5, 0) == 5 && recv(us, buf, sizeof(buf), 0) == 5 &&
		      !memcmp(buf, "dgram", 5), "UDP pair lost its addresses");
	}
	/* where the listener is now (crd restore --remap-ip may have moved it) */
	al = sizeof(a);
	check(!getsockname(lsk, (struct sockaddr *)&a, &al), "getsockname");
	c = socket(AF_INET, SOCK_STREAM, 0);
	check(!connect(c, (struct sockaddr *)&a, sizeof(a)) && accept(lsk, NULL, NULL) >= 0,
	      "the listener no longer accepts");
	return zdtm_pass();
}
