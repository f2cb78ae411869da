/*
 * crd restore: recreate a dumped tree with its PIDs.
 *
 * 1. Every image is read and checked before anything is created.
 * 2. Shared file descriptions are opened here, at fds >= a base above every
 *    fd of the tree (files.h); the tree is built by clone3(set_tid), each
 *    process forking its own children, under a new PID namespace's init with
 *    --pidns.
 * 3. Each process prepares and enters the restorer blob (cr-restore-task.c,
 *    pie/rst.c); we trace them all, let every thread run its final
 *    rt_sigreturn, unmap the blob from each process and detach.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "cr-restore.h"
#include "files.h"
#include "image.h"
#include "img-store.h"
#include "log.h"
#include "netlock.h"
#include "proc.h"
#include "remap.h"
#include "sysv.h"
#include "util.h"

#define RESTORE_TIMEOUT_S	120

void rst_wake(int32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void rst_fail(struct restore_ctx *ctx)
{
	__atomic_store_n(&ctx->sh->failed, 1, __ATOMIC_SEQ_CST);
	rst_wake(&ctx->sh->created);
	rst_wake(&ctx->sh->leaders);
	rst_wake(&ctx->sh->ready);
	rst_wake(&ctx->sh->go);
}

/* Wait until *addr >= val; -ECANCELED when some process failed. */
int rst_wait_for(struct restore_ctx *ctx, int32_t *addr, int32_t val)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	for (;;) {
		int32_t cur = __atomic_load_n(addr, __ATOMIC_SEQ_CST);

		if (__atomic_load_n(&ctx->sh->failed, __ATOMIC_SEQ_CST))
			return -ECANCELED;
		if (cur >= val)
			return 0;
		syscall(SYS_futex, addr, FUTEX_WAIT, cur, &ts, NULL, 0);
	}
}

static void rst_add(int32_t *addr)
{
	__atomic_add_fetch(addr, 1, __ATOMIC_SEQ_CST);
	rst_wake(addr);
}

/* ------------------------------------------------------------------ images */

static int load_images(struct restore_ctx *ctx)
{
	Crd__Inventory *inv;
	size_t i;
	int ret;

	ret = img_read_msg(ctx->dirfd, IMG_INVENTORY_NAME, IMG_INVENTORY,
			   &crd__inventory__descriptor, (ProtobufCMessage **)&ctx->inv);
	if (ret)
		return ret;
	inv = ctx->inv;
	if (!inv->n_tasks || inv->tasks[0]->pid != inv->root_pid) {
		pr_err("%s: the process tree is empty or does not start at its root\n",
		       IMG_INVENTORY_NAME);
		return -EINVAL;
	}
	ctx->nr_tasks = inv->n_tasks;
	ctx->tasks = calloc(inv->n_tasks, sizeof(*ctx->tasks));
	if (!ctx->tasks)
		return -ENOMEM;
	for (i = 0; i < inv->n_tasks; i++) {
		struct rtask *rt = &ctx->tasks[i];
		char name[64];

		rt->pe = inv->tasks[i];
		rt->pages_fd = -1;
		if (rt->pe->has_zombie && rt->pe->zombie)
			continue;	/* comes back as a child that exits again */
		ctx->nr_live++;
		img_task_name(name, sizeof(name), rt->pe->pid);
		ret = img_read_msg(ctx->dirfd, name, IMG_TASK, &crd__task_entry__descriptor,
				   (ProtobufCMessage **)&rt->te);
		if (ret)
			return ret;
		if (rt->te->pid != rt->pe->pid || !rt->te->n_threads || !rt->te->mm ||
		    rt->te->threads[0]->tid != rt->pe->pid) {
			pr_err("%s: does not describe process %u of the inventory\n", name,
			       rt->pe->pid);
			return -EINVAL;
		}
		ctx->nr_threads += rt->te->n_threads;
		img_pages_name(name, sizeof(name), rt->pe->pid);
		rt->pages_fd = img_pages_open(ctx->dirfd, name, rt->te->pages_size);
		if (rt->pages_fd < 0)
			return rt->pages_fd;
	}
	return 0;
}

static int note_vdso(const struct proc_vma *v, void *arg)
{
	uint64_t *sizes = arg;

	if (!strcmp(v->path, "[vvar]"))
		sizes[0] = v->end - v->start;
	else if (!strcmp(v->path, "[vvar_vclock]"))
		sizes[1] = v->end - v->start;
	else if (!strcmp(v->path, "[vdso]"))
		sizes[2] = v->end - v->start;
	return 0;
}

/* The dumped vDSO must be this kernel's: glibc keeps pointers into it. */
static int check_vdso(struct restore_ctx *ctx, const Crd__TaskEntry *te)
{
	uint64_t sizes[3] = { 0, 0, 0 };
	size_t i;

	for (i = 0; i < te->n_vmas; i++) {
		const Crd__VmaEntry *v = te->vmas[i];
		int k = v->kind == CRD__VMA_KIND__VMA_VVAR ? 0 :
			v->kind == CRD__VMA_KIND__VMA_VVAR_VCLOCK ? 1 :
			v->kind == CRD__VMA_KIND__VMA_VDSO ? 2 : -1;

		if (k >= 0)
			sizes[k] = v->end - v->start;
	}
	for (i = 0; i < 3; i++)
		if (sizes[i] != ctx->vdso_size[i]) {
			pr_err("pid %u: its vDSO layout (%lu/%lu/%lu bytes) differs from this "
			       "kernel's (%lu/%lu/%lu)\n", te->pid, sizes[0], sizes[1], sizes[2],
			       ctx->vdso_size[0], ctx->vdso_size[1], ctx->vdso_size[2]);
			return -EINVAL;
		}
	return 0;
}

static int pid_busy(pid_t pid)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d", pid);
	return !access(path, F_OK) || kill(pid, 0) == 0 || errno != ESRCH;
}

static int check_tree(struct restore_ctx *ctx)
{
	size_t i, j;
	int ret;

	proc_parse_maps(0, note_vdso, ctx->vdso_size);
	for (i = 0; i < ctx->nr_tasks; i++) {
		const Crd__TaskEntry *te = ctx->tasks[i].te;

		if (!te) {
			if (!ctx->opts->pidns && pid_busy(ctx->tasks[i].pe->pid)) {
				pr_err("pid %u is in use (restore with --pidns to use a new PID "
				       "namespace)\n", ctx->tasks[i].pe->pid);
				return -EEXIST;
			}
			continue;
		}
		ret = check_vdso(ctx, te);
		if (ret)
			return ret;
		for (j = 0; j < te->n_fds; j++)
			if (te->fds[j]->fd + 1 > ctx->fd_base)
				ctx->fd_base = te->fds[j]->fd + 1;
		if (ctx->opts->pidns)
			continue;
		for (j = 0; j < te->n_threads; j++)
			if (pid_busy(te->threads[j]->tid)) {
				pr_err("pid %u is in use (restore with --pidns to use a new PID "
				       "namespace)\n", te->threads[j]->tid);
				return -EEXIST;
			}
	}
	return 0;
}

/* fds: the tree's below fd_base, ours from fd_base on; make room for both. */
static int setup_fds(struct restore_ctx *ctx)
{
	struct rlimit rl;
	size_t i;
	int ret, need;

	/* a little room above the tree's highest fd, at least past stdio */
	ctx->fd_base = ((ctx->fd_base < 3 ? 3 : ctx->fd_base) + 15) & ~15;
	need = ctx->fd_base + ctx->inv->n_files * 2 + ctx->nr_tasks + 256;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < (rlim_t)need) {
		if (rl.rlim_max < (rlim_t)need) {
			pr_err("the tree needs %d fds, the hard limit is %lu\n", need, rl.rlim_max);
			return -EMFILE;
		}
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	ret = log_move_fd(ctx->fd_base);
	if (ret < 0)
		return ret;
	/* shared memory first: files without a path are opened from its memfds */
	ctx->fd_free = ret + 1;
	ret = restore_shmems(ctx);
	if (!ret)
		ret = sysv_restore(ctx);
	if (!ret)
		ret = fdr_prepare(ctx->inv, ctx->fd_free, ctx->opts->shell_job, shmem_fd, ctx,
				  &ctx->fr);
	if (ret)
		return ret;
	ctx->fd_free = fdr_end(ctx->fr);
	for (i = 0; i < ctx->nr_tasks; i++) {
		int fd;

		if (ctx->tasks[i].pages_fd < 0)
			continue;
		fd = fcntl(ctx->tasks[i].pages_fd, F_DUPFD, ctx->fd_free);

		if (fd < 0) {
			ret = -errno;
			pr_perror("can't move a pages image fd");
			return ret;
		}
		close(ctx->tasks[i].pages_fd);
		ctx->tasks[i].pages_fd = fd;
		ctx->fd_free = fd + 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ tree */

static long clone3_pid(pid_t pid, uint64_t flags, int exit_signal)
{
	int64_t tid = pid;
	struct clone_args ca = {
		.flags = flags,
		.exit_signal = exit_signal,
		.set_tid = pid ? (uint64_t)&tid : 0,
		.set_tid_size = pid ? 1 : 0,
	};

	return syscall(SYS_clone3, &ca, sizeof(ca));
}

static ssize_t task_index(struct restore_ctx *ctx, pid_t pid)
{
	size_t i;

	for (i = 0; i < ctx->nr_tasks; i++)
		if ((pid_t)ctx->tasks[i].pe->pid == pid)
			return i;
	return -1;
}

static void __attribute__((noreturn)) task_main(struct restore_ctx *ctx, size_t idx);

static int fork_task(struct restore_ctx *ctx, size_t idx)
{
	const Crd__TaskEntry *te = ctx->tasks[idx].te;
	int sig = te && te->has_exit_signal && te->exit_signal ? te->exit_signal : SIGCHLD;
	long pid = clone3_pid(ctx->tasks[idx].pe->pid, 0, sig);

	if (pid < 0) {
		int ret = -errno;

		pr_perror("can't create pid %u", ctx->tasks[idx].pe->pid);
		return ret;
	}
	if (pid == 0)
		task_main(ctx, idx);
	return 0;
}

static int set_groups(struct restore_ctx *ctx, size_t idx)
{
	const Crd__PstreeEntry *pe = ctx->tasks[idx].pe;
	int ret;

	ret = rst_wait_for(ctx, &ctx->sh->created, ctx->nr_tasks);
	if (ret)
		return ret;
	/* leaders first, then members can join them */
	if (pe->pgid == pe->pid && pe->sid != pe->pid && setpgid(0, 0)) {
		pr_perror("pid %u: can't lead its process group", pe->pid);
		return -errno;
	}
	rst_add(&ctx->sh->leaders);
	ret = rst_wait_for(ctx, &ctx->sh->leaders, ctx->nr_tasks);
	if (ret)
		return ret;
	if (pe->pgid != pe->pid && getpgid(0) != (pid_t)pe->pgid &&
	    task_index(ctx, pe->pgid) >= 0 && setpgid(0, pe->pgid)) {
		pr_perror("pid %u: can't join process group %u", pe->pid, pe->pgid);
		return -errno;
	}
	return 0;
}

/* A zombie: exits again, as it did, and waits for its parent to reap it. */
static void __attribute__((noreturn)) zombie_exit(const Crd__PstreeEntry *pe)
{
	int status = pe->has_exit_status ? pe->exit_status : 0;
	sigset_t all;

	if (WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		sigfillset(&all);
		sigdelset(&all, WTERMSIG(status));
		sigprocmask(SIG_SETMASK, &all, NULL);
		kill(getpid(), WTERMSIG(status));
	}
	_exit(WEXITSTATUS(status));
}

static void __attribute__((noreturn)) task_main(struct restore_ctx *ctx, size_t idx)
{
	const Crd__PstreeEntry *pe = ctx->tasks[idx].pe;
	char self[32];
	void *args, *stack;
	size_t i;
	ssize_t n;
	int ret = 0;

	if (pe->sid == pe->pid && setsid() < 0) {
		pr_perror("pid %u: can't start its session", pe->pid);
		ret = -errno;
	}
	for (i = 0; !ret && i < ctx->nr_tasks; i++)
		if (ctx->tasks[i].pe->ppid == pe->pid)
			ret = fork_task(ctx, i);
	if (!ret) {
		rst_add(&ctx->sh->created);
		ret = set_groups(ctx, idx);
	}
	if (!ret && !ctx->tasks[idx].te)
		zombie_exit(pe);
	if (!ret)
		ret = restore_task_prepare(ctx, idx, &args, &stack);
	/* /proc is the outer namespace's: /proc/self is our pid as crd sees it */
	n = readlink("/proc/self", self, sizeof(self) - 1);
	if (!ret && n > 0) {
		self[n] = '\0';
		ctx->sh->task[idx].outer_pid = atoi(self);
		rst_add(&ctx->sh->ready);
		ret = rst_wait_for(ctx, &ctx->sh->go, 1);
		if (!ret)
			restore_task_jump(args, stack);
	}
	if (ret != -ECANCELED)
		pr_err("pid %u: restore failed: %s\n", pe->pid, strerror(-ret));
	rst_fail(ctx);
	_exit(1);
}

/* pid 1 of a new PID namespace: creates the root, reaps, exits as the root did */
static void __attribute__((noreturn)) ns_init(struct restore_ctx *ctx)
{
	pid_t root = ctx->tasks[0].pe->pid;
	int status, code = 1;
	pid_t pid;

	if (fork_task(ctx, 0)) {
		rst_fail(ctx);
		_exit(1);
	}
	/* hold none of the tree's files: a pipe reader must see its EOF */
	close_range(0, ~0U, 0);
	while ((pid = wait(&status)) > 0 || errno == EINTR)
		if (pid == root)
			code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	_exit(code);
}

static pid_t create_tree(struct restore_ctx *ctx)
{
	long pid;

	if (ctx->opts->pidns) {
		pid = clone3_pid(0, CLONE_NEWPID, SIGCHLD);
		if (pid == 0)
			ns_init(ctx);
	} else {
		const Crd__TaskEntry *te = ctx->tasks[0].te;

		pid = clone3_pid(te->pid, 0, SIGCHLD);
		if (pid == 0)
			task_main(ctx, 0);
	}
	if (pid < 0)
		pr_perror("can't create the root of the tree");
	return pid;
}

/* ------------------------------------------------------------------ finish */

enum thr_state { THR_RUNNING, THR_TRAPPED, THR_IN_SIGRETURN, THR_DONE };

struct rthr {
	pid_t tid;
	size_t task;
	enum thr_state state;
};

struct finish {
	struct rthr *thr;
	size_t nr, cap;
	size_t done;
};

static struct rthr *thr_get(struct finish *f, pid_t tid, size_t task)
{
	size_t i;

	for (i = 0; i < f->nr; i++)
		if (f->thr[i].tid == tid)
			return &f->thr[i];
	if (f->nr == f->cap) {
		struct rthr *n = realloc(f->thr, (f->cap * 2 + 16) * sizeof(*n));

		if (!n)
			return NULL;
		f->thr = n;
		f->cap = f->cap * 2 + 16;
	}
	f->thr[f->nr] = (struct rthr){ .tid = tid, .task = task };
	return &f->thr[f->nr++];
}

static int seize_tree(struct restore_ctx *ctx, struct finish *f)
{
	size_t i;

	for (i = 0; i < ctx->nr_tasks; i++) {
		pid_t pid = ctx->sh->task[i].outer_pid;

		if (!ctx->tasks[i].te)
			continue;
		if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACECLONE | PTRACE_O_TRACESYSGOOD |
			   PTRACE_O_EXITKILL)) {
			pr_perror("pid %u (%d here): can't seize", ctx->tasks[i].pe->pid, pid);
			return -errno;
		}
		if (!thr_get(f, pid, i))
			return -ENOMEM;
	}
	return 0;
}

/* A thread got a real signal in the restorer or its sigreturn: say where. */
static void report_signal(struct restore_ctx *ctx, const struct rthr *t, int sig)
{
	struct user_regs_struct r = { };
	siginfo_t si = { };

	ptrace(PTRACE_GETREGS, t->tid, 0, &r);
	ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si);
	pr_err("tid %d: signal %d (code %d, address %p) at %#llx while being restored "
	       "(step %d, restorer at %#lx)\n", t->tid, sig, si.si_code, si.si_addr, r.rip,
	       t->state, ctx->sh->task[t->task].blob_start);
}

static int on_stop(struct restore_ctx *ctx, struct finish *f, pid_t tid, int status)
{
	struct rthr *t = thr_get(f, tid, 0);
	int sig = WSTOPSIG(status), event = status >> 16;
	unsigned long msg;

	if (!t)
		return -ENOMEM;
	if (event == PTRACE_EVENT_CLONE) {
		if (!ptrace(PTRACE_GETEVENTMSG, tid, 0, &msg)) {
			size_t task = t->task;

			if (!thr_get(f, msg, task))
				return -ENOMEM;
		}
		return ptrace(PTRACE_CONT, tid, 0, 0) ? -errno : 0;
	}
	if (event == PTRACE_EVENT_STOP)
		return ptrace(PTRACE_CONT, tid, 0, 0) ? -errno : 0;
	if (sig == (SIGTRAP | 0x80)) {
		if (t->state == THR_TRAPPED) {
			t->state = THR_IN_SIGRETURN;
			return ptrace(PTRACE_SYSCALL, tid, 0, 0) ? -errno : 0;
		}
		if (t->state == THR_IN_SIGRETURN) {
			t->state = THR_DONE;
			f->done++;
			return 0;
		}
	}
	if (sig == SIGTRAP && t->state == THR_RUNNING) {
		t->state = THR_TRAPPED;
		return ptrace(PTRACE_SYSCALL, tid, 0, 0) ? -errno : 0;
	}
	report_signal(ctx, t, sig);
	return -EFAULT;
}

/* Run every thread into its rt_sigreturn and stop it on the way out. */
static int wait_sigreturns(struct restore_ctx *ctx, struct finish *f, pid_t child)
{
	time_t deadline = time(NULL) + RESTORE_TIMEOUT_S;
	int status, ret;
	pid_t tid;

	while (f->done < ctx->nr_threads) {
		tid = waitpid(-1, &status, __WALL | WNOHANG);
		if (tid < 0) {
			pr_perror("wait during restore failed");
			return -errno;
		}
		if (tid == 0) {
			if (time(NULL) > deadline || __atomic_load_n(&ctx->sh->failed,
								     __ATOMIC_SEQ_CST)) {
				pr_err("restore failed or timed out (%zu of %zu threads done)\n",
				       f->done, ctx->nr_threads);
				return -ETIMEDOUT;
			}
			usleep(1000);
			continue;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			pr_err("%s %d died during restore (%s %d)\n",
			       tid == child ? "process" : "tid", tid,
			       WIFEXITED(status) ? "exit code" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			return -ECHILD;
		}
		ret = on_stop(ctx, f, tid, status);
		if (ret)
			return ret;
	}
	return 0;
}

/* Run one syscall in a thread stopped after its sigreturn, registers kept. */
static long run_syscall(pid_t tid, uint64_t ip, long nr, const long a[5])
{
	struct user_regs_struct regs, r;
	int status, i;

	if (ptrace(PTRACE_GETREGS, tid, 0, &regs))
		return -errno;
	r = regs;
	r.rip = ip;
	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a[0];
	r.rsi = a[1];
	r.rdx = a[2];
	r.r10 = a[3];
	r.r8 = a[4];
	if (ptrace(PTRACE_SETREGS, tid, 0, &r))
		return -errno;
	/* to the syscall's entry, then to its exit */
	for (i = 0; i < 2; i++) {
		if (ptrace(PTRACE_SYSCALL, tid, 0, 0) || waitpid(tid, &status, __WALL) != tid)
			return -errno;
		if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80)) {
			pr_err("tid %d: unexpected stop %#x in syscall %ld\n", tid, status, nr);
			return -EIO;
		}
	}
	if (ptrace(PTRACE_GETREGS, tid, 0, &r) || ptrace(PTRACE_SETREGS, tid, 0, &regs))
		return -errno;
	return r.rax;
}

/*
 * The last traces of the restore in each process: the blob's region, and
 * crd's log, kept open until now for the blob's error reports.
 */
/* One syscall in process idx with every signal blocked meanwhile. */
static long task_syscall(struct restore_ctx *ctx, size_t idx, long nr, const long a[5])
{
	pid_t tid = ctx->sh->task[idx].outer_pid;
	uint64_t ip = ctx->sh->task[idx].blob_start + restorer_blob_sigreturn;
	uint64_t mask, all = ~0ULL;
	long ret;

	/* a signal pending since the restore (SIGCHLD of a zombie) waits for the detach */
	if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(mask), &mask) ||
	    ptrace(PTRACE_SETSIGMASK, tid, sizeof(all), &all)) {
		pr_perror("tid %d: can't block signals", tid);
		return -errno;
	}
	ret = run_syscall(tid, ip, nr, a);
	if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask) && ret >= 0)
		ret = -errno;
	return ret;
}

/* A live process of the tree by its pid in the images, or -ESRCH. */
static ssize_t live_index(struct restore_ctx *ctx, uint32_t pid)
{
	ssize_t idx = task_index(ctx, pid);

	return idx >= 0 && ctx->tasks[idx].te ? idx : -ESRCH;
}

static long call_in(void *arg, uint32_t pid, long nr, long a1, long a2, long a3, long a4,
		    long a5)
{
	struct restore_ctx *ctx = arg;
	ssize_t idx = live_index(ctx, pid);
	const long a[5] = { a1, a2, a3, a4, a5 };

	return idx < 0 ? idx : task_syscall(ctx, idx, nr, a);
}

/* The restorer's region is not needed any more: its last page is scratch. */
static int poke_in(void *arg, uint32_t pid, const void *buf, size_t len, uint64_t *addr)
{
	struct restore_ctx *ctx = arg;
	ssize_t idx = live_index(ctx, pid);
	struct iovec l = { (void *)buf, len }, r;

	if (idx < 0 || len > PAGE_SIZE)
		return idx < 0 ? idx : -E2BIG;
	*addr = ctx->sh->task[idx].blob_start + ctx->sh->task[idx].blob_len - PAGE_SIZE;
	r = (struct iovec){ (void *)*addr, len };
	if (process_vm_writev(ctx->sh->task[idx].outer_pid, &l, 1, &r, 1, 0) != (ssize_t)len)
		return -errno;
	return 0;
}

static int clean_process(struct restore_ctx *ctx, pid_t tid, size_t idx)
{
	const long close_log[5] = { log_get_fd() };
	const long unmap[5] = { ctx->sh->task[idx].blob_start, ctx->sh->task[idx].blob_len };
	long ret;

	ret = task_syscall(ctx, idx, __NR_close, close_log);
	if (!ret)
		ret = task_syscall(ctx, idx, __NR_munmap, unmap);
	if (ret) {
		pr_err("tid %d: can't remove the restorer: %s\n", tid, strerror(-ret));
		return ret < 0 ? ret : -EIO;
	}
	return 0;
}

static int finish_tree(struct restore_ctx *ctx, pid_t child)
{
	struct finish f = { };
	size_t i;
	int ret;

	ret = rst_wait_for(ctx, &ctx->sh->ready, ctx->nr_live);
	if (!ret)
		ret = seize_tree(ctx, &f);
	if (!ret) {
		__atomic_store_n(&ctx->sh->go, 1, __ATOMIC_SEQ_CST);
		rst_wake(&ctx->sh->go);
		ret = wait_sigreturns(ctx, &f, child);
	}
	if (!ret) {
		struct task_calls tc = { call_in, poke_in, ctx };

		sysv_ipc_replay(ctx->inv, &tc);
	}
	for (i = 0; !ret && i < ctx->nr_tasks; i++)
		if (ctx->tasks[i].te)
			ret = clean_process(ctx, ctx->sh->task[i].outer_pid, i);
	if (ret) {
		free(f.thr);
		return ret;
	}
	/* restored and stopped: the caller may hold it here (a coordinated thaw) */
	ret = run_action_script(ctx->opts->action_script, "pre-resume",
				ctx->sh->task[0].outer_pid);
	if (ret) {
		free(f.thr);
		return ret;
	}
	/* a process that was stopped stops again as soon as we let go */
	for (i = 0; i < ctx->nr_tasks; i++)
		if (ctx->tasks[i].te && ctx->tasks[i].te->has_stopped && ctx->tasks[i].te->stopped)
			kill(ctx->sh->task[i].outer_pid, SIGSTOP);
	for (i = 0; i < f.nr; i++)
		if (ptrace(PTRACE_DETACH, f.thr[i].tid, 0, 0))
			pr_perror("tid %d: can't detach", f.thr[i].tid);
	free(f.thr);
	return 0;
}

/* Kill what was created of the tree after a failure, and reap our child. */
static void kill_tree(struct restore_ctx *ctx, pid_t child)
{
	size_t i;

	rst_fail(ctx);
	for (i = 0; i < ctx->nr_tasks; i++)
		if (ctx->sh->task[i].outer_pid > 0)
			kill(ctx->sh->task[i].outer_pid, SIGKILL);
	if (child > 0) {
		kill(child, SIGKILL);
		while (waitpid(child, NULL, __WALL) < 0 && errno == EINTR)
			;
	}
}

static int wait_root(pid_t child)
{
	int status;

	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Restored connections leave repair mode as soon as both ends exist here, but
 * a peer on another node may not be back yet: until the tree runs (or until
 * `crd net-unlock` when the caller restores the peers too), their packets are
 * dropped, so nothing meets a socket that is not there yet and gets reset.
 */
static int lock_net(struct restore_ctx *ctx)
{
	int ret = netlock_lock(-1, ctx->inv->root_pid, ctx->inv->tcp_sks, ctx->inv->n_tcp_sks);

	ctx->net_locked = !ret && ctx->inv->n_tcp_sks;
	return ret;
}

static void unlock_net(struct restore_ctx *ctx)
{
	if (!ctx->net_locked)
		return;
	if (ctx->opts->keep_net_locked) {
		pr_info("tree %u: its TCP connections stay locked until `crd net-unlock %u`\n",
			ctx->inv->root_pid, ctx->inv->root_pid);
		return;
	}
	netlock_unlock(-1, ctx->inv->root_pid);
	ctx->net_locked = false;
}

static int restore_tree(const struct restore_opts *opts, const char *staging)
{
	struct restore_ctx ctx = { .opts = opts };
	sigset_t all, old;
	pid_t child = -1;
	size_t i;
	int ret;

	ctx.dirfd = img_open_dir(opts->dir);
	if (ctx.dirfd < 0)
		return ctx.dirfd;
	ret = load_images(&ctx);
	if (!ret) {
		remap_inventory(opts, ctx.inv);
		ret = check_tree(&ctx);
	}
	if (!ret && opts->has_owner)
		ret = owner_check(&ctx, opts->owner);
	if (!ret)
		ret = restore_captured(&ctx);
	if (!ret)
		ret = lock_net(&ctx);
	if (!ret)
		ret = setup_fds(&ctx);
	/* every image is read or open by now: staged ones need no room any more */
	if (staging)
		img_store_unstage(staging);
	if (ret) {
		sysv_undo(&ctx);
		unlock_net(&ctx);
		goto out;
	}
	ctx.sh_len = sizeof(*ctx.sh) + ctx.nr_tasks * sizeof(ctx.sh->task[0]);
	ctx.sh = mmap(NULL, ctx.sh_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctx.sh == MAP_FAILED) {
		ctx.sh = NULL;
		ret = -ENOMEM;
		goto out;
	}
	/* nothing of the tree may run a handler before its own state is back */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	child = create_tree(&ctx);
	ret = child < 0 ? -errno : finish_tree(&ctx, child);
	/* the tree has its files: drop ours, or pipe readers would never see EOF */
	close_range(log_get_fd() + 1, ~0U, 0);
	for (i = 0; i < ctx.nr_tasks; i++)
		ctx.tasks[i].pages_fd = -1;
	if (ret) {
		pr_err("restore from %s failed\n", opts->dir);
		kill_tree(&ctx, child);
		sysv_undo(&ctx);
		unlock_net(&ctx);
		goto out;
	}
	sysv_finish(&ctx);
	unlock_net(&ctx);
	if (opts->detach) {
		printf("%d\n", opts->pidns ? child : ctx.sh->task[0].outer_pid);
		fflush(stdout);
	} else {
		ret = wait_root(child);
	}
out:
	if (ctx.sh)
		munmap(ctx.sh, ctx.sh_len);
	if (ctx.fr)
		fdr_free(ctx.fr);
	for (i = 0; ctx.tasks && i < ctx.nr_tasks; i++) {
		if (ctx.tasks[i].pages_fd >= 0)
			close(ctx.tasks[i].pages_fd);
		if (ctx.tasks[i].te)
			crd__task_entry__free_unpacked(ctx.tasks[i].te, NULL);
	}
	free(ctx.tasks);
	free(ctx.shmems);
	free(ctx.sysv_made);
	free(ctx.ipc_made);
	if (ctx.inv)
		crd__inventory__free_unpacked(ctx.inv, NULL);
	close(ctx.dirfd);
	return ret;
}

int cr_restore(const struct restore_opts *opts)
{
	struct restore_opts o = *opts;
	char staging[64];
	int ret;

	if (!opts->store)
		return restore_tree(opts, NULL);
	ret = img_store_stage(opts, staging, sizeof(staging));
	if (ret)
		return ret;
	o.dir = staging;
	ret = restore_tree(&o, staging);
	/* gone already unless the restore failed before reading everything */
	img_store_unstage(staging);
	return ret;
}
