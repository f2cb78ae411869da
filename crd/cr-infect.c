/*
 * Running syscalls inside a stopped thread.  What only the task itself can
 * tell (its sigactions, itimers, POSIX timers, sigaltstack, brk, securebits)
 * is asked by executing one syscall at a time in it: registers set for the
 * call, rip on a `syscall` instruction, one single step.  This keeps the dump
 * free of a parasite blob; the price is a few microseconds per call, which the
 * ~80 calls per process don't notice.
 *
 * orig_rax is -1 while we do this: a thread stopped in a syscall has -ERESTART*
 * in rax and the kernel would "restart" our call otherwise.  All signals are
 * blocked meanwhile so the single step can only end in its own SIGTRAP.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cr-dump.h"
#include "log.h"
#include "proc.h"
#include "util.h"

struct find_syscall {
	pid_t pid;
	uint64_t ip;
	uint64_t first_exec;
};

static int find_syscall_insn(const struct proc_vma *v, void *arg)
{
	struct find_syscall *fs = arg;
	unsigned char buf[8192];
	uint64_t len = v->end - v->start, i;
	struct iovec l, r;

	if (!(v->prot & PROT_EXEC))
		return 0;
	if (!fs->first_exec && strcmp(v->path, "[vsyscall]"))
		fs->first_exec = v->start;
	if (strcmp(v->path, "[vdso]"))
		return 0;
	if (len > sizeof(buf))
		len = sizeof(buf);
	l.iov_base = buf;
	l.iov_len = len;
	r.iov_base = (void *)v->start;
	r.iov_len = len;
	if (process_vm_readv(fs->pid, &l, 1, &r, 1, 0) != (ssize_t)len)
		return 0;
	for (i = 0; i + 1 < len; i++)
		if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
			fs->ip = v->start + i;
			return 1;
		}
	return 0;
}

static int block_all(pid_t tid)
{
	uint64_t all = ~0ULL;

	if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(all), &all)) {
		int ret = -errno;

		pr_perror("tid %d: can't block signals", tid);
		return ret;
	}
	return 0;
}

int infect_start(struct dthread *th, struct infect *inf)
{
	struct find_syscall fs = { .pid = th->tid };
	int ret;

	memset(inf, 0, sizeof(*inf));
	inf->tid = th->tid;
	inf->regs = th->regs;
	proc_parse_maps(th->tid, find_syscall_insn, &fs);
	if (fs.ip) {
		inf->syscall_ip = fs.ip;
	} else if (fs.first_exec) {
		/* no vDSO: poke a syscall instruction, put the bytes back in infect_stop() */
		errno = 0;
		inf->poke_orig = ptrace(PTRACE_PEEKDATA, th->tid, fs.first_exec, 0);
		if (errno) {
			ret = -errno;
			pr_perror("tid %d: can't read code at %#lx", th->tid, fs.first_exec);
			return ret;
		}
		if (ptrace(PTRACE_POKEDATA, th->tid, fs.first_exec,
			   (inf->poke_orig & ~0xffffL) | 0x050f)) {
			ret = -errno;
			pr_perror("tid %d: can't poke a syscall instruction", th->tid);
			return ret;
		}
		inf->poke_addr = inf->syscall_ip = fs.first_exec;
	} else {
		pr_err("tid %d: no executable mapping to run syscalls from\n", th->tid);
		return -ENOEXEC;
	}
	ret = block_all(th->tid);
	if (ret)
		return ret;
	inf->scratch = infect_syscall(inf, __NR_mmap, 0, PAGE_SIZE, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((long)inf->scratch < 0 && (long)inf->scratch > -4096) {
		ret = inf->scratch;
		inf->scratch = 0;
		pr_err("tid %d: can't map a scratch page: %s\n", th->tid, strerror(-ret));
		infect_stop(inf);
		return ret;
	}
	return 0;
}

long infect_syscall(struct infect *inf, long nr, long a1, long a2, long a3, long a4, long a5,
		    long a6)
{
	struct user_regs_struct r = inf->regs;
	int status;

	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a1;
	r.rsi = a2;
	r.rdx = a3;
	r.r10 = a4;
	r.r8 = a5;
	r.r9 = a6;
	r.rip = inf->syscall_ip;
	if (ptrace(PTRACE_SETREGS, inf->tid, 0, &r) ||
	    ptrace(PTRACE_SINGLESTEP, inf->tid, 0, 0)) {
		long ret = -errno;

		pr_perror("tid %d: can't run syscall %ld", inf->tid, nr);
		return ret;
	}
	if (waitpid(inf->tid, &status, __WALL) < 0) {
		long ret = -errno;

		pr_perror("tid %d: wait for syscall %ld failed", inf->tid, nr);
		return ret;
	}
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP) {
		pr_err("tid %d: syscall %ld: unexpected stop (status %#x)\n", inf->tid, nr, status);
		return -EIO;
	}
	if (ptrace(PTRACE_GETREGS, inf->tid, 0, &r)) {
		long ret = -errno;

		pr_perror("tid %d: can't read the result of syscall %ld", inf->tid, nr);
		return ret;
	}
	return r.rax;
}

static int scratch_io(struct infect *inf, void *buf, size_t len, bool write)
{
	struct iovec l = { buf, len }, r = { (void *)inf->scratch, len };
	ssize_t n;

	if (len > PAGE_SIZE)
		return -E2BIG;
	n = write ? process_vm_writev(inf->tid, &l, 1, &r, 1, 0)
		  : process_vm_readv(inf->tid, &l, 1, &r, 1, 0);
	if (n != (ssize_t)len) {
		int ret = n < 0 ? -errno : -EIO;

		pr_perror("tid %d: scratch page %s failed", inf->tid, write ? "write" : "read");
		return ret;
	}
	return 0;
}

int infect_scratch_write(struct infect *inf, const void *buf, size_t len)
{
	return scratch_io(inf, (void *)buf, len, true);
}

int infect_scratch_read(struct infect *inf, void *buf, size_t len)
{
	return scratch_io(inf, buf, len, false);
}

static int put_regs_back(struct infect *inf)
{
	if (ptrace(PTRACE_SETREGS, inf->tid, 0, &inf->regs)) {
		int ret = -errno;

		pr_perror("tid %d: can't restore registers", inf->tid);
		return ret;
	}
	return 0;
}

int infect_switch(struct infect *inf, struct dthread *th)
{
	int ret = put_regs_back(inf);

	if (ret)
		return ret;
	inf->tid = th->tid;
	inf->regs = th->regs;
	return block_all(th->tid);
}

int infect_stop(struct infect *inf)
{
	int ret = 0;

	if (inf->scratch) {
		long r = infect_syscall(inf, __NR_munmap, inf->scratch, PAGE_SIZE, 0, 0, 0, 0);

		if (r) {
			pr_err("tid %d: can't unmap the scratch page: %s\n", inf->tid,
			       strerror(-r));
			ret = r;
		}
		inf->scratch = 0;
	}
	if (inf->poke_addr) {
		if (ptrace(PTRACE_POKEDATA, inf->tid, inf->poke_addr, inf->poke_orig)) {
			ret = -errno;
			pr_perror("tid %d: can't undo the poke at %#lx", inf->tid, inf->poke_addr);
		}
		inf->poke_addr = 0;
	}
	if (put_regs_back(inf))
		ret = -EIO;
	return ret;
}
