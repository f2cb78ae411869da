/*
 * A child stopped by SIGSTOP at checkpoint time is stopped after restore,
 * and runs on when continued.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

static char state_of(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	char s = '?';

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		s = p[2];
	if (f)
		fclose(f);
	return s;
}

int main(void)
{
	pid_t child;
	int st;

	zdtm_init("stopped");
	child = fork();
	if (child == 0) {
		raise(SIGSTOP);
		zdtm_wait();
		return 0;
	}
	check(waitpid(child, &st, WUNTRACED) == child && WIFSTOPPED(st), "child did not stop");
	if (zdtm_corrupt())
		kill(child, SIGCONT);
	zdtm_ready();
	zdtm_wait();
	for (int i = 0; i < 100 && state_of(child) != 'T'; i++)
		usleep(1000);
	check(state_of(child) == 'T', "child is not stopped (%c)", state_of(child));
	kill(child, SIGCONT);
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child: %#x", st);
	return zdtm_pass();
}
