/*
 * A 3-level tree with its own session and process groups: the root leads a
 * session; child A leads a group that grandchild A1 joins; child B stays in
 * the root's group.  After restore every process checks its ids; the root
 * collects the verdicts.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static struct ids me;

static void note(void)
{
	me.pid = getpid();
	me.ppid = getppid();
	me.pgid = getpgid(0);
	me.sid = getsid(0);
}

/* The root's parent is whoever restored it: its ppid is not compared. */
static int verify(const char *who, int check_ppid)
{
	if (!check_ppid)
		me.ppid = getppid();
	check(getpid() == me.pid && getppid() == me.ppid && getpgid(0) == me.pgid &&
	      getsid(0) == me.sid, "%s: ids %d/%d/%d/%d, want %d/%d/%d/%d", who, getpid(),
	      getppid(), getpgid(0), getsid(0), me.pid, me.ppid, me.pgid, me.sid);
	return 0;
}

static int reap(pid_t pid)
{
	int st;

	check(waitpid(pid, &st, 0) == pid, "waitpid %d", pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static void wait_ready(int fd)
{
	char c;

	check(read(fd, &c, 1) == 1, "child did not start");
}

int main(void)
{
	int p[2];
	pid_t a, b;

	zdtm_init("fork_tree");
	check(setsid() > 0, "setsid");
	check(!pipe(p), "pipe");
	a = fork();
	if (a == 0) {
		pid_t a1;

		setpgid(0, 0);
		a1 = fork();
		if (a1 == 0) {
			setpgid(0, getppid());
			note();
			check(write(p[1], "g", 1) == 1, "write");
			zdtm_wait();
			return verify("grandchild", 1);
		}
		note();
		check(write(p[1], "a", 1) == 1, "write");
		zdtm_wait();
		verify("child A", 1);
		kill(a1, SIGUSR2);
		return reap(a1);
	}
	b = fork();
	if (b == 0) {
		note();
		check(write(p[1], "b", 1) == 1, "write");
		zdtm_wait();
		return verify("child B", 1);
	}
	wait_ready(p[0]);
	wait_ready(p[0]);
	wait_ready(p[0]);
	close(p[0]);
	close(p[1]);
	note();
	if (zdtm_corrupt())
		me.sid++;
	zdtm_ready();
	zdtm_wait();
	verify("root", 0);
	kill(a, SIGUSR2);
	kill(b, SIGUSR2);
	check(reap(a) == 0 && reap(b) == 0, "a child failed");
	return zdtm_pass();
}
