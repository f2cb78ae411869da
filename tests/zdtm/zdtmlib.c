#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "zdtmlib.h"

volatile int zdtm_signalled;

static void on_usr2(int sig)
{
	zdtm_signalled = 1;
}

void zdtm_init(const char *name)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);
	(void)name;
}

void zdtm_ready(void)
{
	int fd = open("ready.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || close(fd) || rename("ready.tmp", "ready"))
		fail("can't create the ready file");
}

/* Wait with the test's own mask, only SIGUSR2 let through. */
void zdtm_wait(void)
{
	sigset_t mask;

	sigprocmask(SIG_BLOCK, NULL, &mask);
	sigdelset(&mask, SIGUSR2);
	while (!zdtm_signalled)
		sigsuspend(&mask);
}

int zdtm_corrupt(void)
{
	const char *c = getenv("TEST_CORRUPT");

	return c && *c == '1';
}

uint64_t zdtm_hash(const void *p, size_t len)
{
	const uint64_t *q = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len / 8; i++)
		h = (h ^ q[i]) * 0x100000001b3ULL;
	return h;
}

uint64_t zdtm_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}
