/* Anonymous memory full of random data (ZDTM_MEM_MB, default 1024 MiB). */
#include <stdlib.h>
#include <sys/mman.h>
#include "zdtmlib.h"

int main(void)
{
	size_t mb = getenv("ZDTM_MEM_MB") ? atol(getenv("ZDTM_MEM_MB")) : 1024;
	size_t len = mb << 20, i;
	uint64_t seed = 0x9e3779b97f4a7c15ULL, *m, h;

	zdtm_init("mem_random");
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(m != MAP_FAILED, "mmap of %zu MiB", mb);
	for (i = 0; i < len / 8; i++)
		m[i] = zdtm_rand(&seed);
	h = zdtm_hash(m, len);
	if (zdtm_corrupt())
		m[len / 16] ^= 1;
	zdtm_ready();
	zdtm_wait();
	check(zdtm_hash(m, len) == h, "memory checksum differs");
	/* and it is still ordinary writable memory */
	m[0] = 1;
	return zdtm_pass();
}
