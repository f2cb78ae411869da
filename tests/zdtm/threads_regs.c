/*
 * 8 threads, each holding distinct values in general purpose, SSE and AVX
 * registers across the checkpoint: they wait in an asm loop that only makes
 * nanosleep syscalls (which preserve every register but rax, rcx, r11).
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include "zdtmlib.h"

#define NTHREADS 8

struct regs {
	uint64_t gp[7];		/* rbx rbp r8 r9 r10 r12 r13 (r14, r15 hold pointers) */
	uint64_t ymm[16][4];
};

static volatile int go;
static volatile int started;
static struct regs want[NTHREADS], got[NTHREADS];

static void *worker(void *arg)
{
	long idx = (long)arg;
	struct regs *w = &want[idx], *g = &got[idx];
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	register struct regs *r14 asm("r14") = w;
	register struct regs *r15 asm("r15") = g;
	int i, j;

	for (i = 0; i < 7; i++)
		w->gp[i] = 0x1111111111111111ULL * (i + 1) + idx;
	for (i = 0; i < 16; i++)
		for (j = 0; j < 4; j++)
			w->ymm[i][j] = ((uint64_t)idx << 48) | (i << 8) | j | 0x0101000000000000ULL;
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	asm volatile(
		"push %%rbp\n\t"
		"mov 0(%%r14), %%rbx\n\t mov 8(%%r14), %%rbp\n\t mov 16(%%r14), %%r8\n\t"
		"mov 24(%%r14), %%r9\n\t mov 32(%%r14), %%r10\n\t mov 40(%%r14), %%r12\n\t"
		"mov 48(%%r14), %%r13\n\t"
		"vmovdqu 56(%%r14), %%ymm0\n\t vmovdqu 88(%%r14), %%ymm1\n\t"
		"vmovdqu 120(%%r14), %%ymm2\n\t vmovdqu 152(%%r14), %%ymm3\n\t"
		"vmovdqu 184(%%r14), %%ymm4\n\t vmovdqu 216(%%r14), %%ymm5\n\t"
		"vmovdqu 248(%%r14), %%ymm6\n\t vmovdqu 280(%%r14), %%ymm7\n\t"
		"vmovdqu 312(%%r14), %%ymm8\n\t vmovdqu 344(%%r14), %%ymm9\n\t"
		"vmovdqu 376(%%r14), %%ymm10\n\t vmovdqu 408(%%r14), %%ymm11\n\t"
		"vmovdqu 440(%%r14), %%ymm12\n\t vmovdqu 472(%%r14), %%ymm13\n\t"
		"vmovdqu 504(%%r14), %%ymm14\n\t vmovdqu 536(%%r14), %%ymm15\n\t"
		"1:\n\t"
		"mov $35, %%eax\n\t"		/* nanosleep(rdi = &ts, rsi = NULL) */
		"syscall\n\t"
		"cmpl $0, (%%rdx)\n\t"
		"je 1b\n\t"
		"mov %%rbx, 0(%%r15)\n\t mov %%rbp, 8(%%r15)\n\t mov %%r8, 16(%%r15)\n\t"
		"mov %%r9, 24(%%r15)\n\t mov %%r10, 32(%%r15)\n\t mov %%r12, 40(%%r15)\n\t"
		"mov %%r13, 48(%%r15)\n\t"
		"vmovdqu %%ymm0, 56(%%r15)\n\t vmovdqu %%ymm1, 88(%%r15)\n\t"
		"vmovdqu %%ymm2, 120(%%r15)\n\t vmovdqu %%ymm3, 152(%%r15)\n\t"
		"vmovdqu %%ymm4, 184(%%r15)\n\t vmovdqu %%ymm5, 216(%%r15)\n\t"
		"vmovdqu %%ymm6, 248(%%r15)\n\t vmovdqu %%ymm7, 280(%%r15)\n\t"
		"vmovdqu %%ymm8, 312(%%r15)\n\t vmovdqu %%ymm9, 344(%%r15)\n\t"
		"vmovdqu %%ymm10, 376(%%r15)\n\t vmovdqu %%ymm11, 408(%%r15)\n\t"
		"vmovdqu %%ymm12, 440(%%r15)\n\t vmovdqu %%ymm13, 472(%%r15)\n\t"
		"vmovdqu %%ymm14, 504(%%r15)\n\t vmovdqu %%ymm15, 536(%%r15)\n\t"
		"pop %%rbp\n\t"
		"vzeroupper\n\t"
		:
		: "r"(r14), "r"(r15), "D"(&ts), "S"(0), "d"(&go)
		: "rax", "rbx", "rcx", "r8", "r9", "r10", "r11", "r12", "r13", "memory",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	return NULL;
}

int main(void)
{
	pthread_t th[NTHREADS];
	sigset_t set;
	long i;

	zdtm_init("threads_regs");
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	for (i = 0; i < NTHREADS; i++)
		check(!pthread_create(&th[i], NULL, worker, (void *)i), "pthread_create");
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS)
		;
	if (zdtm_corrupt())
		want[3].ymm[5][2] ^= 1;
	zdtm_ready();
	zdtm_wait();
	go = 1;
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < NTHREADS; i++)
		check(!memcmp(&want[i], &got[i], sizeof(want[i])), "thread %ld registers differ", i);
	return zdtm_pass();
}
