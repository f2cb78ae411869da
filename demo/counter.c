/*
 * The demo's workload: counts, keeps a running checksum of 64 MiB of state
 * it updates as it goes, and logs "count checksum" five times a second.
 * After a restore the count goes on from where it was, never from zero.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	size_t n = (64 << 20) / 8, i;
	uint64_t *state = calloc(n, 8), sum = 0, count;

	if (!state)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (count = 1;; count++) {
		for (i = count % 4096; i < n; i += 4096) {
			state[i] = state[i] * 6364136223846793005ULL + count;
			sum += state[i];
		}
		printf("%lu %016lx\n", count, sum);
		usleep(200000);
	}
}
