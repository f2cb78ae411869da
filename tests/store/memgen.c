/*
 * Memory that changes by generations, for store tests and benchmarks.
 *
 *   memgen MiB PERCENT
 *
 * Fills MiB of anonymous memory; page i holds a pattern of (i, g) where g is
 * the last generation that wrote it.  SIGUSR1 starts generation g+1: PERCENT
 * of the pages (chosen by g) are rewritten, then "gen G" is appended to the
 * file "gens" in the cwd.  SIGUSR2: every page is checked against what
 * generation g left (the state the process is in), "verified G" is printed
 * and the exit status is 0, or 1 with the first bad page.  The file "ready"
 * appears once the memory is filled.  TEST_CORRUPT=1 damages a page first.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE	4096UL

static volatile sig_atomic_t next, verify;

static void on_usr1(int s)
{
	next = 1;
}

static void on_usr2(int s)
{
	verify = 1;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* the generation that last wrote page i, when g generations have passed */
static unsigned last_gen(size_t i, unsigned g, unsigned pct)
{
	for (; g > 0; g--)
		if (mix(i * 1000003 + g) % 100 < pct)
			return g;
	return 0;
}

static void fill(uint64_t *p, size_t i, unsigned g)
{
	for (size_t w = 0; w < PAGE / 8; w++)
		p[w] = mix((i << 20) ^ (w << 8) ^ g);
}

int main(int argc, char **argv)
{
	size_t npages, i;
	unsigned pct, g = 0;
	char *mem;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: memgen MiB PERCENT\n");
		return 2;
	}
	npages = strtoul(argv[1], NULL, 10) * (1 << 20) / PAGE;
	pct = atoi(argv[2]);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 2;
	for (i = 0; i < npages; i++)
		fill((uint64_t *)(mem + i * PAGE), i, 0);
	if (getenv("TEST_CORRUPT"))
		mem[npages / 2 * PAGE + 7] ^= 1;
	fclose(fopen("ready", "w"));
	for (;;) {
		while (!next && !verify)
			usleep(1000);
		if (verify)
			break;
		next = 0;
		g++;
		for (i = 0; i < npages; i++)
			if (last_gen(i, g, pct) == g)
				fill((uint64_t *)(mem + i * PAGE), i, g);
		f = fopen("gens", "a");
		if (!f)
			return 2;
		fprintf(f, "gen %u\n", g);
		fclose(f);
	}
	for (i = 0; i < npages; i++) {
		uint64_t want[PAGE / 8];

		fill(want, i, last_gen(i, g, pct));
		if (memcmp(want, mem + i * PAGE, PAGE)) {
			printf("FAIL: page %zu differs from generation %u\n", i, g);
			return 1;
		}
	}
	printf("verified %u\n", g);
	return 0;
}
