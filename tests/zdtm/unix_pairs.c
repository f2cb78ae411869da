/*
 * UNIX socketpairs between a parent and its child (stream, datagram and
 * seqpacket) with data queued in both directions, and one half shut down;
 * a listener bound to a path, with a connection the parent accepted from the
 * child.  After restore the queued data arrives intact, with its message
 * boundaries, the pairs still carry new data both ways, and the listener
 * accepts a new connection.
 */
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
#define NT 3

static void expect_empty(int fd, const char *who)
{
	char c;

	check(recv(fd, &c, 1, MSG_DONTWAIT) < 0, "%s: more data queued than sent", who);
}

static void expect(int fd, const char *want, int type, const char *who)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	check(n == (ssize_t)strlen(want) && !memcmp(buf, want, n),
	      "%s type %d: got %zd bytes '%.*s', want '%s'", who, type, n,
	      n > 0 ? (int)n : 0, buf, want);
}

int main(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sv[NT][2], hs[2], st, i, lsk, acc, cl;
	pid_t child;

	zdtm_init("unix_pairs");
	check(getcwd(sun.sun_path, sizeof(sun.sun_path) - 16), "getcwd");
	strcat(sun.sun_path, "/srv.sock");
	lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	check(lsk >= 0 && !bind(lsk, (struct sockaddr *)&sun, sizeof(sun)) && !listen(lsk, 4),
	      "listen");
	cl = socket(AF_UNIX, SOCK_STREAM, 0);
	check(cl >= 0 && !connect(cl, (struct sockaddr *)&sun, sizeof(sun)), "connect");
	acc = accept(lsk, NULL, NULL);
	check(acc >= 0 && send(cl, "via-listener", 12, 0) == 12, "accept");
	for (i = 0; i < NT; i++)
		check(!socketpair(AF_UNIX, types[i], 0, sv[i]), "socketpair");
	check(!socketpair(AF_UNIX, SOCK_STREAM, 0, hs), "socketpair");
	child = fork();
	if (child == 0) {
		for (i = 0; i < NT; i++) {
			close(sv[i][0]);
			check(send(sv[i][1], "to-parent-1", 11, 0) == 11, "send");
			check(send(sv[i][1], "to-parent-2", 11, 0) == 11, "send");
		}
		close(hs[0]);
		check(send(hs[1], "last words", 10, 0) == 10 && !shutdown(hs[1], SHUT_WR), "shut");
		zdtm_wait();
		for (i = 0; i < NT; i++) {
			if (types[i] == SOCK_STREAM) {
				expect(sv[i][1], "to-child-1to-child-2", types[i], "child");
			} else {
				expect(sv[i][1], "to-child-1", types[i], "child");
				expect(sv[i][1], "to-child-2", types[i], "child");
			}
			expect_empty(sv[i][1], "child");
			check(send(sv[i][1], "after", 5, 0) == 5, "send after restore");
		}
		return 0;
	}
	for (i = 0; i < NT; i++) {
		close(sv[i][1]);
		check(send(sv[i][0], "to-child-1", 10, 0) == 10, "send");
		check(send(sv[i][0], "to-child-2", 10, 0) == 10, "send");
	}
	close(hs[1]);
	usleep(100000);		/* the child's sends are queued */
	if (zdtm_corrupt())
		send(sv[1][0], "extra", 5, 0);
	zdtm_ready();
	zdtm_wait();
	for (i = 0; i < NT; i++) {
		if (types[i] == SOCK_STREAM) {
			expect(sv[i][0], "to-parent-1to-parent-2", types[i], "parent");
		} else {
			expect(sv[i][0], "to-parent-1", types[i], "parent");
			expect(sv[i][0], "to-parent-2", types[i], "parent");
		}
		expect_empty(sv[i][0], "parent");
	}
	expect(hs[0], "last words", SOCK_STREAM, "parent (shut down pair)");
	expect(acc, "via-listener", SOCK_STREAM, "parent (accepted connection)");
	check(send(acc, "back", 4, 0) == 4, "send on the accepted connection");
	expect(cl, "back", SOCK_STREAM, "parent (connected client)");
	{
		int c2 = socket(AF_UNIX, SOCK_STREAM, 0);

		check(c2 >= 0 && !connect(c2, (struct sockaddr *)&sun, sizeof(sun)) &&
		      accept(lsk, NULL, NULL) >= 0, "the listener no longer accepts");
	}
	{
		char c;

		check(recv(hs[0], &c, 1, MSG_DONTWAIT) == 0, "the shutdown was lost");
	}
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child failed");
	for (i = 0; i < NT; i++)
		expect(sv[i][0], "after", types[i], "parent, new data");
	return zdtm_pass();
}
