/*
 * Per-process state other than memory and fds.  What /proc shows is read
 * there; sigactions, itimers, POSIX timers, sigaltstacks, brk and securebits
 * are asked inside the task (cr-infect.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cr-dump.h"
#include "log.h"
#include "util.h"

struct k_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

#define GROW(a, arr, cap, n) arena_grow(a, (void **)&(arr), &(cap), (n) + 1, sizeof(*(arr)))

static int dump_sigactions(struct dump_ctx *ctx, struct infect *inf, Crd__TaskEntry *te)
{
	size_t cap = 0;
	int sig;

	for (sig = 1; sig <= 64; sig++) {
		struct k_sigaction ka;
		Crd__Sigaction *e;
		long r;

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		r = infect_syscall(inf, __NR_rt_sigaction, sig, 0, inf->scratch, 8, 0, 0);
		if (r == -EINVAL)
			continue;
		if (r || infect_scratch_read(inf, &ka, sizeof(ka))) {
			pr_err("pid %d: can't read the action of signal %d\n", te->pid, sig);
			return r ? r : -EIO;
		}
		if (!ka.handler && !ka.flags && !ka.mask)
			continue;
		e = arena_alloc(&ctx->arena, sizeof(*e));
		if (!e || GROW(&ctx->arena, te->sigactions, cap, te->n_sigactions))
			return -ENOMEM;
		crd__sigaction__init(e);
		e->sig = sig;
		e->handler = ka.handler;
		e->flags = ka.flags;
		e->restorer = ka.restorer;
		e->mask = ka.mask;
		te->sigactions[te->n_sigactions++] = e;
	}
	return 0;
}

static uint64_t tv_us(const struct timeval *tv)
{
	return tv->tv_sec * 1000000ULL + tv->tv_usec;
}

static int dump_itimers(struct dump_ctx *ctx, struct infect *inf, Crd__TaskEntry *te)
{
	size_t cap = 0;
	int which;

	for (which = ITIMER_REAL; which <= ITIMER_PROF; which++) {
		struct itimerval iv;
		Crd__Itimer *e;
		long r = infect_syscall(inf, __NR_getitimer, which, inf->scratch, 0, 0, 0, 0);

		if (r || infect_scratch_read(inf, &iv, sizeof(iv))) {
			pr_err("pid %d: can't read itimer %d\n", te->pid, which);
			return r ? r : -EIO;
		}
		if (!timerisset(&iv.it_value) && !timerisset(&iv.it_interval))
			continue;
		e = arena_alloc(&ctx->arena, sizeof(*e));
		if (!e || GROW(&ctx->arena, te->itimers, cap, te->n_itimers))
			return -ENOMEM;
		crd__itimer__init(e);
		e->which = which;
		e->interval_us = tv_us(&iv.it_interval);
		e->value_us = tv_us(&iv.it_value);
		te->itimers[te->n_itimers++] = e;
	}
	return 0;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * 1000000000ULL + ts->tv_nsec;
}

/*
 * /proc/PID/timers: "ID: n\nsignal: s/ptr\nnotify: signal|thread|none/pid.tid\n
 * ClockID: c\n" per timer.
 */
static int dump_posix_timers(struct dump_ctx *ctx, struct infect *inf, Crd__TaskEntry *te)
{
	char path[64], *buf, *p;
	size_t cap = 0;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/timers", te->pid);
	ret = read_file(path, &buf);
	if (ret < 0) {
		pr_err("pid %d: can't read %s: %s\n", te->pid, path, strerror(-ret));
		return ret;
	}
	ret = 0;
	/* each timer starts with an "ID:" line ("ClockID:" lines don't count) */
	for (p = strncmp(buf, "ID:", 3) ? strstr(buf, "\nID:") : buf; p && !ret;
	     p = strstr(p + 1, "\nID:")) {
		char notify[16] = "", kind[8] = "";
		struct itimerspec its;
		Crd__PosixTimer *e;
		int id, sig, clk, tid = 0;
		unsigned long sigval;
		long r;

		if (sscanf(p, " ID: %d signal: %d/%lx notify: %15[a-z]/%7[a-z].%d ClockID: %d",
			   &id, &sig, &sigval, notify, kind, &tid, &clk) < 7) {
			pr_err("pid %d: can't parse %s\n", te->pid, path);
			ret = -EINVAL;
			break;
		}
		r = infect_syscall(inf, __NR_timer_gettime, id, inf->scratch, 0, 0, 0, 0);
		if (r || infect_scratch_read(inf, &its, sizeof(its))) {
			pr_err("pid %d: can't read POSIX timer %d\n", te->pid, id);
			ret = r ? r : -EIO;
			break;
		}
		e = arena_alloc(&ctx->arena, sizeof(*e));
		if (!e || GROW(&ctx->arena, te->timers, cap, te->n_timers)) {
			ret = -ENOMEM;
			break;
		}
		crd__posix_timer__init(e);
		e->id = id;
		e->clock_id = clk;
		e->signo = sig;
		e->sigval = sigval;
		if (!strcmp(notify, "thread")) {
			e->notify = SIGEV_SIGNAL | SIGEV_THREAD_ID;
			e->has_notify_tid = true;
			e->notify_tid = tid;
		} else if (!strcmp(notify, "signal")) {
			e->notify = SIGEV_SIGNAL;
		} else {
			e->notify = SIGEV_NONE;
		}
		e->interval_ns = ts_ns(&its.it_interval);
		e->value_ns = ts_ns(&its.it_value);
		r = infect_syscall(inf, __NR_timer_getoverrun, id, 0, 0, 0, 0, 0);
		if (r > 0) {
			e->has_overrun = true;
			e->overrun = r;
		}
		te->timers[te->n_timers++] = e;
	}
	free(buf);
	return ret;
}

static int dump_altstack(struct infect *inf, Crd__ThreadEntry *e)
{
	stack_t ss;
	long r = infect_syscall(inf, __NR_sigaltstack, 0, inf->scratch, 0, 0, 0, 0);

	if (r || infect_scratch_read(inf, &ss, sizeof(ss))) {
		pr_err("tid %d: can't read its sigaltstack\n", inf->tid);
		return r ? r : -EIO;
	}
	if (ss.ss_flags & SS_DISABLE)
		return 0;
	e->has_altstack_sp = e->has_altstack_size = e->has_altstack_flags = true;
	e->altstack_sp = (uint64_t)ss.ss_sp;
	e->altstack_size = ss.ss_size;
	/* SS_ONSTACK is a state, not a setting */
	e->altstack_flags = ss.ss_flags & ~SS_ONSTACK;
	return 0;
}

/*
 * Asked inside the task: prlimit() on another user's process needs
 * CAP_SYS_RESOURCE, which root lacks on these machines.
 */
static int dump_rlimits(struct dump_ctx *ctx, struct infect *inf, Crd__TaskEntry *te)
{
	size_t cap = 0;
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit rl;
		Crd__Rlimit *e;
		long ret = infect_syscall(inf, __NR_prlimit64, 0, r, 0, inf->scratch, 0, 0);

		if (ret || infect_scratch_read(inf, &rl, sizeof(rl))) {
			pr_err("pid %d: can't read rlimit %d\n", te->pid, r);
			return ret ? ret : -EIO;
		}
		e = arena_alloc(&ctx->arena, sizeof(*e));
		if (!e || GROW(&ctx->arena, te->rlimits, cap, te->n_rlimits))
			return -ENOMEM;
		crd__rlimit__init(e);
		e->resource = r;
		e->cur = rl.rlim_cur;
		e->max = rl.rlim_max;
		te->rlimits[te->n_rlimits++] = e;
	}
	return 0;
}

/* pthread_join() waits for the kernel to clear this word when the thread exits */
static int dump_clear_tid(struct infect *inf, Crd__ThreadEntry *e)
{
	uint64_t addr;
	long r = infect_syscall(inf, __NR_prctl, PR_GET_TID_ADDRESS, inf->scratch, 0, 0, 0, 0);

	if (r || infect_scratch_read(inf, &addr, sizeof(addr))) {
		pr_err("tid %d: can't read its clear_child_tid address\n", inf->tid);
		return r ? r : -EIO;
	}
	e->has_clear_child_tid = true;
	e->clear_child_tid = addr;
	return 0;
}

/* Everything that is asked inside the task. */
static int dump_infected(struct dump_ctx *ctx, struct dtask *t)
{
	Crd__TaskEntry *te = t->te;
	struct infect inf;
	long brk, sb;
	size_t i;
	int ret, ret2;

	ret = infect_start(&t->threads[0], &inf);
	if (ret)
		return ret;
	ret = dump_sigactions(ctx, &inf, te);
	if (!ret)
		ret = dump_itimers(ctx, &inf, te);
	if (!ret)
		ret = dump_posix_timers(ctx, &inf, te);
	if (!ret)
		ret = dump_rlimits(ctx, &inf, te);
	if (!ret) {
		brk = infect_syscall(&inf, __NR_brk, 0, 0, 0, 0, 0, 0);
		sb = infect_syscall(&inf, __NR_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0, 0);
		if (brk < 0 || sb < 0) {
			pr_err("pid %d: can't read brk or securebits\n", t->pid);
			ret = -EIO;
		} else {
			te->mm->brk = brk;
			for (i = 0; i < te->n_threads; i++)
				te->threads[i]->creds->securebits = sb;
		}
	}
	for (i = 0; !ret && i < t->nr_threads; i++) {
		if (i)
			ret = infect_switch(&inf, &t->threads[i]);
		if (!ret)
			ret = dump_altstack(&inf, te->threads[i]);
		if (!ret)
			ret = dump_clear_tid(&inf, te->threads[i]);
	}
	ret2 = infect_stop(&inf);
	return ret ? ret : ret2;
}

static char *read_link(struct arena *a, pid_t pid, const char *name)
{
	char path[64], buf[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0) {
		pr_perror("pid %d: can't read %s", pid, path);
		return NULL;
	}
	buf[n] = '\0';
	return arena_strdup(a, buf);
}

/* /proc/PID/stat: fields after the comm, 1-based as in proc(5) */
static int stat_fields(pid_t pid, uint64_t *f, int max)
{
	char path[64], *buf, *p, *save;
	int i, ret;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	ret = read_file(path, &buf);
	if (ret < 0)
		return ret;
	p = strrchr(buf, ')');
	if (!p) {
		free(buf);
		return -EINVAL;
	}
	memset(f, 0, max * sizeof(*f));
	/* field 3 (the state) is a letter; the rest are numbers */
	for (i = 3, p = strtok_r(p + 2, " ", &save); p && i < max; p = strtok_r(NULL, " ", &save))
		f[i++] = strtoull(p, NULL, 10);
	free(buf);
	return 0;
}

static int dump_mm(struct dump_ctx *ctx, Crd__TaskEntry *te)
{
	struct arena *a = &ctx->arena;
	Crd__MmEntry *mm = te->mm;
	uint64_t f[53], *auxv;
	char path[64], *buf;
	ssize_t len;
	int ret;

	ret = stat_fields(te->pid, f, 53);
	if (ret) {
		pr_err("pid %d: can't parse /proc/%d/stat\n", te->pid, te->pid);
		return ret;
	}
	mm->start_code = f[26];
	mm->end_code = f[27];
	mm->start_stack = f[28];
	mm->start_data = f[45];
	mm->end_data = f[46];
	mm->start_brk = f[47];
	mm->arg_start = f[48];
	mm->arg_end = f[49];
	mm->env_start = f[50];
	mm->env_end = f[51];
	te->has_exit_signal = true;
	te->exit_signal = f[38];

	snprintf(path, sizeof(path), "/proc/%d/auxv", te->pid);
	len = read_file(path, &buf);
	if (len < 0) {
		pr_err("pid %d: can't read %s\n", te->pid, path);
		return len;
	}
	auxv = arena_alloc(a, len + 16);
	if (!auxv) {
		free(buf);
		return -ENOMEM;
	}
	memcpy(auxv, buf, len);
	free(buf);
	mm->auxv = auxv;
	for (mm->n_auxv = 0; mm->n_auxv + 1 < (size_t)len / 8; mm->n_auxv += 2)
		if (auxv[mm->n_auxv] == 0)
			break;
	mm->n_auxv += 2;	/* AT_NULL included */

	mm->exe_path = read_link(a, te->pid, "exe");
	if (!mm->exe_path)
		return -ENOENT;
	if (strstr(mm->exe_path, " (deleted)")) {
		pr_err("pid %d: its executable %s was deleted: not supported\n", te->pid,
		       mm->exe_path);
		return -ENOTSUP;
	}
	return 0;
}

static int dump_misc(struct dump_ctx *ctx, Crd__TaskEntry *te)
{
	char path[64], *buf, *p;
	int ret;

	te->cwd = read_link(&ctx->arena, te->pid, "cwd");
	te->root = read_link(&ctx->arena, te->pid, "root");
	if (!te->cwd || !te->root)
		return -ENOENT;
	snprintf(path, sizeof(path), "/proc/%d/status", te->pid);
	ret = read_file(path, &buf);
	if (ret < 0)
		return ret;
	p = strstr(buf, "\nUmask:");
	te->umask = p ? strtoul(p + 7, NULL, 8) : 022;
	free(buf);
	snprintf(path, sizeof(path), "/proc/%d/personality", te->pid);
	ret = read_file(path, &buf);
	if (ret < 0)
		return ret;
	te->personality = strtoul(buf, NULL, 16);
	free(buf);
	return 0;
}

int dump_task_state(struct dump_ctx *ctx, struct dtask *t)
{
	Crd__TaskEntry *te = t->te;
	int ret;

	ret = dump_mm(ctx, te);
	if (!ret)
		ret = dump_infected(ctx, t);
	if (!ret)
		ret = dump_misc(ctx, te);
	return ret;
}
