/*
 * mpi_app: an MPI job for checkpoint/restart tests across nodes.
 *
 *     mpi_app ITERATIONS SLEEP_MS [BIG_BYTES]
 *
 * Every iteration: a 1-D halo exchange of a ring of integer fields, a large
 * point-to-point message (BIG_BYTES, default 4 MiB) to the rank half way
 * round the ring (on another node when ranks are placed by node), and two
 * MPI_Allreduce, then SLEEP_MS of sleep.  Each big message carries its
 * sender, iteration and a checksum of its payload, all verified; one
 * Allreduce sums values every rank can predict and is verified too.  Any
 * mismatch aborts the job with a message naming rank and iteration.
 *
 * All arithmetic is on 64-bit integers (sums mod 2^64 do not depend on the
 * reduction order), so the final "RESULT <hex>" printed by rank 0 is the same
 * with Open MPI and MPICH, on any placement, for the same ITERATIONS and
 * number of ranks: a restarted job must print the result of an
 * uninterrupted one.  Rank 0 prints where the ranks run and its progress
 * ("it N") about ten times per run, flushed.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FIELD	4096		/* cells per rank */

static uint64_t mix(uint64_t x)
{
	/* splitmix64 finaliser: cheap, well spread, deterministic */
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t sum64(const uint64_t *p, size_t n)
{
	uint64_t h = 0x84222325cbf29ce4ULL;
	size_t i;

	for (i = 0; i < n; i++)
		h = mix(h ^ p[i]);
	return h;
}

static int rank, size;

static void fail(long it, const char *what)
{
	fprintf(stderr, "mpi_app: rank %d: %s at iteration %ld\n", rank, what, it);
	fflush(stderr);
	MPI_Abort(MPI_COMM_WORLD, 1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts))
		;
}

int main(int argc, char **argv)
{
	long iters, sleep, it, i, every;
	size_t big, words;
	uint64_t *u, *nu, *sbuf, *rbuf, result = 0;
	char host[MPI_MAX_PROCESSOR_NAME];
	char *hosts = NULL;
	int len, left, right, to, from;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc < 3) {
		if (!rank)
			fprintf(stderr, "usage: mpi_app ITERATIONS SLEEP_MS [BIG_BYTES]\n");
		MPI_Finalize();
		return 2;
	}
	iters = atol(argv[1]);
	sleep = atol(argv[2]);
	big = argc > 3 ? strtoul(argv[3], NULL, 0) : 4 << 20;
	words = big / 8 < 4 ? 4 : big / 8;

	memset(host, 0, sizeof(host));
	MPI_Get_processor_name(host, &len);
	if (!rank)
		hosts = malloc((size_t)size * sizeof(host));
	MPI_Gather(host, sizeof(host), MPI_CHAR, hosts, sizeof(host), MPI_CHAR, 0, MPI_COMM_WORLD);
	if (!rank) {
		printf("start size=%d iterations=%ld restart=%s hosts=", size, iters,
		       getenv("SLURM_RESTART_COUNT") ? getenv("SLURM_RESTART_COUNT") : "-");
		for (i = 0; i < size; i++)
			printf("%s%s", i ? "," : "", hosts + i * sizeof(host));
		printf("\n");
		fflush(stdout);
		free(hosts);
	}

	u = calloc(FIELD + 2, sizeof(*u));
	nu = calloc(FIELD + 2, sizeof(*nu));
	sbuf = malloc(words * sizeof(*sbuf));
	rbuf = malloc(words * sizeof(*rbuf));
	if (!u || !nu || !sbuf || !rbuf)
		fail(0, "out of memory");
	for (i = 1; i <= FIELD; i++)
		u[i] = mix((uint64_t)rank * FIELD + i);
	left = (rank + size - 1) % size;
	right = (rank + 1) % size;
	to = (rank + size / 2) % size;
	from = (rank + size - size / 2) % size;
	every = iters / 10 > 0 ? iters / 10 : 1;

	for (it = 0; it < iters; it++) {
		uint64_t mine[2], all[2], expect = 0, h;
		MPI_Status st;
		int r;

		/* halo exchange on the ring */
		MPI_Sendrecv(&u[1], 1, MPI_UINT64_T, left, 1, &u[FIELD + 1], 1, MPI_UINT64_T,
			     right, 1, MPI_COMM_WORLD, &st);
		MPI_Sendrecv(&u[FIELD], 1, MPI_UINT64_T, right, 2, &u[0], 1, MPI_UINT64_T,
			     left, 2, MPI_COMM_WORLD, &st);
		for (i = 1; i <= FIELD; i++)
			nu[i] = mix(u[i - 1] ^ (u[i] << 1) ^ (u[i + 1] >> 1) ^ (uint64_t)it);
		memcpy(&u[1], &nu[1], FIELD * sizeof(*u));

		/*
		 * the big message: header (sender, iteration), payload drawn from
		 * the sender's field, checksum of both in the last word
		 */
		sbuf[0] = rank;
		sbuf[1] = it;
		h = sum64(&u[1], FIELD);
		for (i = 2; i < (long)words - 1; i++)
			sbuf[i] = mix(h + i);
		sbuf[words - 1] = sum64(sbuf, words - 1);
		MPI_Sendrecv(sbuf, words, MPI_UINT64_T, to, 3, rbuf, words, MPI_UINT64_T, from, 3,
			     MPI_COMM_WORLD, &st);
		if (rbuf[0] != (uint64_t)from || rbuf[1] != (uint64_t)it)
			fail(it, "big message from the wrong sender or iteration");
		if (rbuf[words - 1] != sum64(rbuf, words - 1))
			fail(it, "big message checksum mismatch");
		u[1] ^= rbuf[words - 1];

		/* one sum every rank can predict, one that carries the state */
		mine[0] = mix((uint64_t)rank ^ ((uint64_t)it << 32));
		mine[1] = sum64(&u[1], FIELD);
		MPI_Allreduce(mine, all, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		for (r = 0; r < size; r++)
			expect += mix((uint64_t)r ^ ((uint64_t)it << 32));
		if (all[0] != expect)
			fail(it, "allreduce checksum mismatch");
		result = mix(result ^ all[1]);

		if (!rank && (it % every == 0 || it == iters - 1)) {
			printf("it %ld\n", it);
			fflush(stdout);
		}
		sleep_ms(sleep);
	}
	if (!rank) {
		printf("RESULT %016llx\n", (unsigned long long)result);
		fflush(stdout);
	}
	free(u);
	free(nu);
	free(sbuf);
	free(rbuf);
	MPI_Finalize();
	return 0;
}
