/*
 * An MPI job for the checkpoint tests: ranks pass a counter around a ring
 * and exchange a block of checksummed data every iteration.  Rank 0 logs
 * "it N v V" every 10 iterations and, at the end, "RESULT ok" when the
 * counter and every checksum came out as an uninterrupted run computes them.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ITERS 80
#define BLOCK 4096

int main(int argc, char **argv)
{
	int rank, size, v = 0, bad = 0, it, i, all_bad;
	static uint64_t out[BLOCK], in[BLOCK];

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	for (it = 0; it < ITERS; it++) {
		int next = (rank + 1) % size, prev = (rank + size - 1) % size, got;

		for (i = 0; i < BLOCK; i++)
			out[i] = (uint64_t)it * 1000003 + (uint64_t)rank * 7919 + i;
		MPI_Sendrecv(&v, 1, MPI_INT, next, 0, &got, 1, MPI_INT, prev, 0, MPI_COMM_WORLD,
			     MPI_STATUS_IGNORE);
		MPI_Sendrecv(out, BLOCK, MPI_UINT64_T, next, 1, in, BLOCK, MPI_UINT64_T, prev, 1,
			     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		for (i = 0; i < BLOCK; i++)
			bad |= in[i] != (uint64_t)it * 1000003 + (uint64_t)prev * 7919 + i;
		v = got + 1;
		if (rank == 0 && it % 10 == 0) {
			printf("it %d v %d\n", it, v);
			fflush(stdout);
		}
		usleep(50000);
	}
	MPI_Allreduce(&bad, &all_bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
	if (rank == 0) {
		/* every iteration each rank takes its neighbour's counter plus one */
		printf("RESULT %s v %d\n", !all_bad && v == ITERS ? "ok" : "BAD", v);
		fflush(stdout);
	}
	MPI_Finalize();
	return 0;
}
