/* Sparse and zero mappings: touched pages, zeroed pages, never-touched ones, PROT_NONE. */
#include <string.h>
#include <sys/mman.h>
#include "zdtmlib.h"

#define PG 4096UL
#define NPAGES 65536UL	/* 256 MiB */

int main(void)
{
	unsigned char *m, *z, *never, *none;
	size_t i;

	zdtm_init("mem_sparse");
	m = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	z = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	never = mmap(NULL, 1UL << 30, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	none = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(m != MAP_FAILED && z != MAP_FAILED && never != MAP_FAILED && none != MAP_FAILED,
	      "mmap");
	for (i = 0; i < NPAGES; i += 97)
		memset(m + i * PG, (int)(i % 251) + 1, PG);
	memset(z, 0xaa, 64 * PG);
	memset(z, 0, 32 * PG);		/* written, then zeroed */
	for (i = 0; i < 1UL << 30; i += 1UL << 20)
		(void)*(volatile unsigned char *)(never + i);	/* read: zero page only */
	memset(none, 0x5c, 16 * PG);
	check(!mprotect(none, 16 * PG, PROT_NONE), "mprotect");
	if (zdtm_corrupt())
		m[97 * PG] = 0;
	zdtm_ready();
	zdtm_wait();
	for (i = 0; i < NPAGES; i++) {
		unsigned char want = i % 97 ? 0 : (unsigned char)(i % 251) + 1;

		check(m[i * PG] == want && m[i * PG + PG - 1] == want, "page %zu", i);
	}
	for (i = 0; i < 64 * PG; i++)
		check(z[i] == (i < 32 * PG ? 0 : 0xaa), "zeroed mapping byte %zu", i);
	for (i = 0; i < 1UL << 30; i += 1UL << 20)
		check(never[i] == 0, "untouched mapping at %zu", i);
	check(!mprotect(none, 16 * PG, PROT_READ), "mprotect back");
	for (i = 0; i < 16 * PG; i++)
		check(none[i] == 0x5c, "PROT_NONE mapping byte %zu", i);
	return zdtm_pass();
}
