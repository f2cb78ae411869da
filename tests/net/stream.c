/*
 * One end of a TCP stream that carries a known byte sequence both ways, for
 * checkpoints of connections between hosts.
 *
 *   stream listen ADDR PORT STATUS     accept one connection, then stream
 *   stream connect ADDR PORT STATUS    connect, then stream
 *
 * Byte i of each direction is pattern(i); every byte read is checked, so a
 * gap, a duplicate or a reordering fails at once.  The totals go to the
 * status file ("sent N received M\n", rewritten in place) so that the test
 * sees the stream move.  On SIGUSR2 the end stops sending and shuts down its
 * writing side, reads the peer's stream to its end and exits 0 if every byte
 * was right (1 and a message if not).  TEST_CORRUPT=1 makes the listening end
 * expect a wrong pattern, to show that the check can fail.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static int corrupt;

static unsigned char pattern(uint64_t i)
{
	return (unsigned char)((i * 2654435761u) >> 13) ^ (unsigned char)(i >> 20);
}

static void on_usr2(int sig)
{
	stop = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "FAIL: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int open_conn(const char *mode, const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int sk = socket(AF_INET, SOCK_STREAM, 0), one = 1, c;

	if (sk < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		die("socket");
	if (!strcmp(mode, "connect")) {
		/* the listener may still be starting */
		for (int i = 0; connect(sk, (void *)&sa, sizeof(sa)); i++) {
			if (i > 500)
				die("connect");
			usleep(10000);
		}
		return sk;
	}
	setsockopt(sk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(sk, (void *)&sa, sizeof(sa)) || listen(sk, 1))
		die("listen");
	c = accept(sk, NULL, NULL);
	if (c < 0)
		die("accept");
	close(sk);
	return c;
}

static void put_status(int fd, uint64_t tx, uint64_t rx)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "sent %llu received %llu\n",
			 (unsigned long long)tx, (unsigned long long)rx);

	if (pwrite(fd, buf, n, 0) != n || ftruncate(fd, n))
		die("status");
}

static int check_rx(const unsigned char *buf, ssize_t n, uint64_t *rx)
{
	for (ssize_t i = 0; i < n; i++, (*rx)++)
		if (buf[i] != (unsigned char)(pattern(*rx) + corrupt)) {
			fprintf(stderr, "FAIL: byte %llu is %#x, expected %#x\n",
				(unsigned long long)*rx, buf[i], pattern(*rx));
			return -1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char out[16384], in[65536];
	uint64_t tx = 0, rx = 0, last = 0;
	int sk, st, shut = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: stream listen|connect ADDR PORT STATUS\n");
		return 2;
	}
	corrupt = getenv("TEST_CORRUPT") && !strcmp(argv[1], "listen");
	signal(SIGUSR2, on_usr2);
	signal(SIGPIPE, SIG_IGN);
	st = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (st < 0)
		die(argv[4]);
	sk = open_conn(argv[1], argv[2], atoi(argv[3]));
	fcntl(sk, F_SETFL, O_NONBLOCK);
	put_status(st, 0, 0);
	for (;;) {
		struct pollfd p = { .fd = sk, .events = POLLIN | (shut ? 0 : POLLOUT) };
		ssize_t n;

		if (stop && !shut) {
			if (shutdown(sk, SHUT_WR))
				die("shutdown");
			shut = 1;
		}
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			die("poll");
		if (!shut && (p.revents & POLLOUT)) {
			for (size_t i = 0; i < sizeof(out); i++)
				out[i] = pattern(tx + i);
			n = write(sk, out, sizeof(out));
			if (n < 0 && errno != EAGAIN)
				die("write");
			if (n > 0)
				tx += n;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(sk, in, sizeof(in));
			if (n < 0 && errno != EAGAIN)
				die("read");
			if (n == 0) {
				if (!shut)
					continue;	/* the peer finished first: finish too */
				break;
			}
			if (n > 0 && check_rx(in, n, &rx))
				return 1;
		}
		usleep(300);
		if (tx + rx - last >= (1 << 20) || stop) {
			put_status(st, tx, rx);
			last = tx + rx;
		}
	}
	put_status(st, tx, rx);
	printf("PASS sent %llu received %llu\n", (unsigned long long)tx, (unsigned long long)rx);
	return 0;
}
