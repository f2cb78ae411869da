/*
 * Zombies in the tree: one child exited with code 7, one was killed by
 * SIGTERM, neither reaped before the checkpoint.  After restore the parent
 * reaps both with the same statuses, and a live child is still there.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

static int is_zombie(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int z = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		z = p[2] == 'Z';
	if (f)
		fclose(f);
	return z;
}

int main(void)
{
	pid_t a, b, c;
	int st;

	zdtm_init("zombie");
	a = fork();
	if (a == 0)
		_exit(7);
	b = fork();
	if (b == 0) {
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &(sigset_t){ 0 }, NULL);
		raise(SIGTERM);
		_exit(1);
	}
	c = fork();
	if (c == 0) {
		zdtm_wait();
		return 0;
	}
	while (!is_zombie(a) || !is_zombie(b))
		usleep(1000);
	if (zdtm_corrupt())
		waitpid(a, NULL, 0);
	zdtm_ready();
	zdtm_wait();
	check(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 7,
	      "zombie a: status %#x", st);
	check(waitpid(b, &st, 0) == b && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
	      "zombie b: status %#x", st);
	kill(c, SIGUSR2);
	check(waitpid(c, &st, 0) == c && WIFEXITED(st) && !WEXITSTATUS(st), "live child: %#x", st);
	return zdtm_pass();
}
