/*
 * UNIX datagram servers: one bound to a path, one to an abstract name, each
 * with messages queued from a child's client connected to it, and an unnamed
 * unconnected socket that sends with sendto; a stream listener bound to a
 * relative name with a connection from the child waiting.  After restore the queued messages arrive in order with
 * their boundaries, the connected client and the unnamed sender still reach
 * the servers, and the listener accepts the waiting connection and new ones.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

static socklen_t addr(struct sockaddr_un *sun, const char *name)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	strncpy(sun->sun_path, name, sizeof(sun->sun_path) - 1);
	if (name[0] == '@')
		sun->sun_path[0] = '\0';
	return offsetof(struct sockaddr_un, sun_path) + strlen(name);
}

static int server(const char *name)
{
	struct sockaddr_un sun;
	socklen_t len = addr(&sun, name);
	int sk = socket(AF_UNIX, SOCK_DGRAM, 0);

	check(sk >= 0 && !bind(sk, (struct sockaddr *)&sun, len), "bind %s", name);
	return sk;
}

static int client(const char *name)
{
	struct sockaddr_un sun;
	socklen_t len = addr(&sun, name);
	int sk = socket(AF_UNIX, SOCK_DGRAM, 0);

	check(sk >= 0 && !connect(sk, (struct sockaddr *)&sun, len), "connect %s", name);
	return sk;
}

static int client_stream(const char *name)
{
	struct sockaddr_un sun;
	socklen_t len = addr(&sun, name);
	int sk = socket(AF_UNIX, SOCK_STREAM, 0);

	check(sk >= 0 && !connect(sk, (struct sockaddr *)&sun, len), "connect %s", name);
	return sk;
}

static void expect(int sk, const char *want)
{
	char buf[64];
	ssize_t n = recv(sk, buf, sizeof(buf), MSG_DONTWAIT);

	check(n == (ssize_t)strlen(want) && !memcmp(buf, want, n), "expected '%s', got %zd bytes",
	      want, n);
}

int main(void)
{
	char path[300], abstract[64], cwd[256], msg[32];
	int s1, s2, c1, c2, c3, lone, st, i, sent[2], ls;
	struct sockaddr_un sun;
	socklen_t len;
	pid_t child;

	zdtm_init("unix_dgram");
	check(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
	snprintf(path, sizeof(path), "%s/dgram.sock", cwd);
	snprintf(abstract, sizeof(abstract), "@crd-zdtm-dgram-%d", getpid());
	s1 = server(path);
	s2 = server(abstract);
	{
		struct sockaddr_un rel;
		socklen_t rlen = addr(&rel, "rel.sock");

		ls = socket(AF_UNIX, SOCK_STREAM, 0);
		check(ls >= 0 && !bind(ls, (struct sockaddr *)&rel, rlen) && !listen(ls, 4),
		      "relative listener");
	}
	lone = socket(AF_UNIX, SOCK_DGRAM, 0);
	check(lone >= 0 && !pipe(sent), "socket");
	child = fork();
	if (child == 0) {
		close(sent[0]);
		c1 = client(path);
		c2 = client(abstract);
		/* a connection the parent's listener has not accepted yet */
		c3 = client_stream("rel.sock");
		for (i = 0; i < 3; i++) {
			snprintf(msg, sizeof(msg), "path-%d", i);
			check(send(c1, msg, strlen(msg), 0) > 0, "send");
			snprintf(msg, sizeof(msg), "abstract-%d", i);
			check(send(c2, msg, strlen(msg), 0) > 0, "send");
		}
		close(sent[1]);
		zdtm_wait();
		check(send(c1, "after-1", 7, 0) == 7 && send(c2, "after-2", 7, 0) == 7,
		      "the connected clients no longer reach their servers");
		check(write(c3, "p", 1) == 1, "the pending connection is broken");
		return 0;
	}
	/* the child has sent everything when it closes its end of the pipe */
	close(sent[1]);
	check(read(sent[0], msg, 1) == 0, "child");
	close(sent[0]);
	if (zdtm_corrupt())
		recv(s1, msg, sizeof(msg), 0);
	zdtm_ready();
	zdtm_wait();
	for (i = 0; i < 3; i++) {
		snprintf(msg, sizeof(msg), "path-%d", i);
		expect(s1, msg);
		snprintf(msg, sizeof(msg), "abstract-%d", i);
		expect(s2, msg);
	}
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child: %#x", st);
	expect(s1, "after-1");
	expect(s2, "after-2");
	len = addr(&sun, path);
	check(sendto(lone, "lone", 4, 0, (struct sockaddr *)&sun, len) == 4, "sendto");
	expect(s1, "lone");
	c3 = accept(ls, NULL, NULL);
	check(c3 >= 0 && read(c3, msg, 2) == 1 && msg[0] == 'p',
	      "the connection waiting on the listener is lost");
	c1 = client_stream("rel.sock");
	c2 = accept(ls, NULL, NULL);
	check(c2 >= 0 && write(c1, "x", 1) == 1 && read(c2, msg, 1) == 1 && msg[0] == 'x',
	      "the relative listener does not accept");
	unlink(path);
	unlink("rel.sock");
	return zdtm_pass();
}
