/*
 * Restarted syscalls: the root sleeps in nanosleep, its child blocks in
 * read() on a pipe.  After restore the sleep ends no earlier than asked and
 * the read returns what is written then.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "zdtmlib.h"

#define SLEEP_S 3

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	struct timespec req = { SLEEP_S, 0 }, rem;
	int p[2], st;
	char buf[16];
	pid_t child;
	double t0;

	zdtm_init("sleep_read");
	check(!pipe(p), "pipe");
	child = fork();
	if (child == 0) {
		close(p[1]);
		/* blocks here across the checkpoint */
		check(read(p[0], buf, 5) == 5 && !memcmp(buf, "hello", 5), "read");
		return 0;
	}
	close(p[0]);
	if (zdtm_corrupt())
		req.tv_sec = 0;
	zdtm_ready();
	t0 = now();
	while (nanosleep(&req, &rem) && req.tv_sec + req.tv_nsec)
		req = rem;
	check(now() - t0 >= SLEEP_S - 0.01, "nanosleep ended early: %.3f s",
	      now() - t0);
	zdtm_wait();
	check(write(p[1], "hello", 5) == 5, "write");
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st),
	      "the reader failed");
	return zdtm_pass();
}
