/*
 * Kernel state of a task that only a faithful restore keeps: its alternate
 * signal stack, rseq registration, personality, brk, auxv, the mm fields in
 * /proc/self/stat, its executable link and its command line.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "zdtmlib.h"

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

static char *slurp(const char *path, size_t *len)
{
	static char bufs[4][8192];
	static int n;
	char *b = bufs[n++ % 4];
	FILE *f = fopen(path, "r");

	check(f, "open %s", path);
	*len = fread(b, 1, sizeof(bufs[0]) - 1, f);
	b[*len] = '\0';
	fclose(f);
	return b;
}

/* fields 26-28 and 45-51 of /proc/self/stat: code, stack, data, brk, args, env */
static void mm_fields(unsigned long *v)
{
	size_t len;
	char *s = strrchr(slurp("/proc/self/stat", &len), ')') + 2, *tok, *save;
	int i = 3, k = 0;

	for (tok = strtok_r(s, " ", &save); tok; tok = strtok_r(NULL, " ", &save), i++)
		if ((i >= 26 && i <= 28) || (i >= 45 && i <= 51))
			v[k++] = strtoul(tok, NULL, 10);
}

static int rseq_cpu(void)
{
	/* struct rseq: cpu_id_start, then cpu_id; -1 when not registered */
	return ((volatile int *)((char *)__builtin_thread_pointer() + __rseq_offset))[1];
}

int main(void)
{
	static char altstack[64 * 1024];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) }, cur;
	unsigned long mm[10], mm2[10];
	char exe[256], exe2[256], *auxv, *cmd;
	size_t auxv_len, cmd_len, l;
	unsigned int cpu;
	void *brk0;
	int pers;

	zdtm_init("task_state");
	check(!sigaltstack(&ss, NULL), "sigaltstack");
	check(personality(PER_LINUX | ADDR_NO_RANDOMIZE) >= 0, "personality");
	pers = personality(0xffffffff);
	mm_fields(mm);
	auxv = slurp("/proc/self/auxv", &auxv_len);
	cmd = slurp("/proc/self/cmdline", &cmd_len);
	exe[readlink("/proc/self/exe", exe, sizeof(exe) - 1)] = '\0';
	check(__rseq_size > 0 && rseq_cpu() >= 0, "glibc registered no rseq");
	if (zdtm_corrupt())
		personality(PER_LINUX);
	brk0 = sbrk(0);		/* last: nothing below allocates */
	zdtm_ready();
	zdtm_wait();
	check(!sigaltstack(NULL, &cur) && cur.ss_sp == altstack && cur.ss_size == sizeof(altstack) &&
	      !(cur.ss_flags & SS_DISABLE), "sigaltstack lost");
	check(personality(0xffffffff) == pers, "personality %#x, want %#x",
	      personality(0xffffffff), pers);
	check(sbrk(0) == brk0, "brk moved: %p, was %p", sbrk(0), brk0);
	check(sbrk(4096) == brk0, "brk can't grow");
	mm_fields(mm2);
	mm2[4] = mm[4];		/* start_brk..: the brk field is not in stat, the rest must match */
	check(!memcmp(mm, mm2, sizeof(mm)), "mm fields in /proc/self/stat differ");
	check(!memcmp(slurp("/proc/self/auxv", &l), auxv, auxv_len) && l == auxv_len, "auxv differs");
	check(!memcmp(slurp("/proc/self/cmdline", &l), cmd, cmd_len) && l == cmd_len,
	      "command line differs");
	exe2[readlink("/proc/self/exe", exe2, sizeof(exe2) - 1)] = '\0';
	check(!strcmp(exe, exe2), "exe is %s, was %s", exe2, exe);
	sched_yield();
	check(rseq_cpu() >= 0 && syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 &&
	      (unsigned int)rseq_cpu() == cpu, "rseq is not registered (cpu_id %d)", rseq_cpu());
	return zdtm_pass();
}
