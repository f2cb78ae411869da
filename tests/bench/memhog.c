/*
 * Benchmark subject: N MiB of random anonymous memory, then it waits.  On
 * SIGUSR2 it checks the memory and exits 0 when it is intact.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile int go;

static void on_usr2(int sig)
{
	go = 1;
}

int main(int argc, char **argv)
{
	size_t len = (size_t)atol(argc > 1 ? argv[1] : "64") << 20, i;
	uint64_t s = 88172645463325252ULL, h = 0, h2 = 0, *m;
	sigset_t set, empty;

	signal(SIGUSR2, on_usr2);
	sigemptyset(&set);
	sigemptyset(&empty);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	for (i = 0; i < len / 8; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		m[i] = s;
		h += s;
	}
	close(open("ready", O_WRONLY | O_CREAT, 0644));
	while (!go)
		sigsuspend(&empty);
	for (i = 0; i < len / 8; i++)
		h2 += m[i];
	return h == h2 ? 0 : 1;
}
