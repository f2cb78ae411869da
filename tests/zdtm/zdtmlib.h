/*
 * zdtm-style test programs: set up a state, create the file "ready" in the
 * cwd, wait for SIGUSR2 (sent after checkpoint and restore), verify every bit
 * of the state, exit 0 when all is as it was, 1 (saying what differs) if not.
 * With TEST_CORRUPT=1 in the environment a test damages its own state before
 * waiting, to show that its verification can fail.
 */
#ifndef ZDTMLIB_H
#define ZDTMLIB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern volatile int zdtm_signalled;

/* Install the SIGUSR2 handler (blocked until zdtm_wait) and note the test name. */
void zdtm_init(const char *name);
/* Tell the runner the state is set up. */
void zdtm_ready(void);
/* Wait for SIGUSR2. */
void zdtm_wait(void);
int zdtm_corrupt(void);
uint64_t zdtm_hash(const void *p, size_t len);
uint64_t zdtm_rand(uint64_t *s);

#define fail(fmt, ...) do {						\
	fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__);	\
	exit(1);							\
} while (0)

#define check(cond, fmt, ...) do { if (!(cond)) fail(fmt, ##__VA_ARGS__); } while (0)

static inline int zdtm_pass(void)
{
	printf("PASS\n");
	fflush(stdout);
	return 0;
}

#endif
