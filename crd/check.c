/*
 * crd check: probe every kernel interface the engine relies on, with real
 * calls, and say which one is missing.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crd.h"
#include "log.h"
#include "netlock.h"
#include "util.h"

#define PR_TIMER_CREATE_RESTORE_IDS	77
#define PR_TIMER_CREATE_RESTORE_IDS_GET	2
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC		(1 << 15)	/* Linux 6.7, newer than the headers */
#endif

struct probe_ctx {
	pid_t child;		/* a stopped, seized child for the ptrace probes */
	char why[160];
};

#define WHY(c, ...) (snprintf((c)->why, sizeof((c)->why), __VA_ARGS__), -1)

static int probe_ptrace(struct probe_ctx *c)
{
	int status;

	if (ptrace(PTRACE_SEIZE, c->child, 0, 0) || ptrace(PTRACE_INTERRUPT, c->child, 0, 0))
		return WHY(c, "PTRACE_SEIZE/INTERRUPT: %s", strerror(errno));
	if (waitpid(c->child, &status, __WALL) != c->child || status >> 16 != PTRACE_EVENT_STOP)
		return WHY(c, "no interrupt stop (status %#x)", status);
	return 0;
}

static int probe_regsets(struct probe_ctx *c)
{
	char buf[8192];
	struct iovec iov = { buf, sizeof(buf) };
	uint64_t mask;
	struct __ptrace_rseq_configuration rseq;

	if (ptrace(PTRACE_GETREGSET, c->child, NT_X86_XSTATE, &iov))
		return WHY(c, "NT_X86_XSTATE: %s", strerror(errno));
	if (ptrace(PTRACE_GETSIGMASK, c->child, sizeof(mask), &mask))
		return WHY(c, "PTRACE_GETSIGMASK: %s", strerror(errno));
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, c->child, sizeof(rseq), &rseq) < 0)
		return WHY(c, "PTRACE_GET_RSEQ_CONFIGURATION: %s", strerror(errno));
	return 0;
}

static int probe_peeksiginfo(struct probe_ctx *c)
{
	struct __ptrace_peeksiginfo_args a = { 0, PTRACE_PEEKSIGINFO_SHARED, 1 };
	char si[128];

	if (ptrace(PTRACE_PEEKSIGINFO, c->child, &a, si) < 0)
		return WHY(c, "%s", strerror(errno));
	return 0;
}

static int probe_vm_readv(struct probe_ctx *c)
{
	static const char word[] = "crd";
	char got[sizeof(word)];
	struct iovec l = { got, sizeof(got) }, r = { (void *)word, sizeof(word) };

	if (process_vm_readv(c->child, &l, 1, &r, 1, 0) != sizeof(word) || strcmp(got, word))
		return WHY(c, "%s", strerror(errno));
	return 0;
}

static int probe_pagemap(struct probe_ctx *c)
{
	static volatile char page[4096] __attribute__((aligned(4096)));
	uint64_t e = 0;
	int fd;

	page[0] = 1;
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || pread(fd, &e, 8, (uintptr_t)page / 4096 * 8) != 8)
		return WHY(c, "can't read /proc/self/pagemap: %s", strerror(errno));
	close(fd);
	if (!(e & ((1ULL << 55) - 1)))
		return WHY(c, "no PFNs in pagemap (not root?)");
	return 0;
}

static int probe_map_files(struct probe_ctx *c)
{
	char path[64];
	void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd;

	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)p,
		 (unsigned long)p + 4096);
	fd = open(path, O_RDONLY);
	munmap(p, 4096);
	if (fd < 0)
		return WHY(c, "%s: %s", path, strerror(errno));
	close(fd);
	return 0;
}

static int probe_clone3_set_tid(struct probe_ctx *c)
{
	int64_t tid = c->child;		/* busy: the kernel must say so */
	struct clone_args ca = {
		.exit_signal = SIGCHLD, .set_tid = (uint64_t)&tid, .set_tid_size = 1,
	};
	long r = syscall(SYS_clone3, &ca, sizeof(ca));

	if (r == 0)
		_exit(0);
	if (r > 0) {
		waitpid(r, NULL, 0);
		return WHY(c, "clone3 ignored set_tid");
	}
	if (errno != EEXIST)
		return WHY(c, "clone3 with set_tid: %s", strerror(errno));
	return 0;
}

static int probe_pidfd_getfd(struct probe_ctx *c)
{
	int pidfd = syscall(SYS_pidfd_open, c->child, 0), fd;

	if (pidfd < 0)
		return WHY(c, "pidfd_open: %s", strerror(errno));
	fd = syscall(SYS_pidfd_getfd, pidfd, 0, 0);
	close(pidfd);
	if (fd < 0)
		return WHY(c, "pidfd_getfd: %s", strerror(errno));
	close(fd);
	return 0;
}

static int probe_kcmp(struct probe_ctx *c)
{
	if (syscall(SYS_kcmp, getpid(), c->child, KCMP_FILE, 0, 0) < 0)
		return WHY(c, "%s", strerror(errno));
	return 0;
}

static int probe_memfd(struct probe_ctx *c)
{
	int fd = memfd_create("crd-check", MFD_CLOEXEC);

	if (fd < 0)
		return WHY(c, "%s", strerror(errno));
	close(fd);
	return 0;
}

static int probe_fixed_noreplace(struct probe_ctx *c)
{
	void *p = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *q;

	q = mmap(p, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	munmap(p, 8192);
	if (q != MAP_FAILED || errno != EEXIST)
		return WHY(c, "MAP_FIXED_NOREPLACE does not refuse a busy range");
	return 0;
}

static int probe_mm_map(struct probe_ctx *c)
{
	unsigned int size = 0;

	if (prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) || size != 104)
		return WHY(c, "PR_SET_MM_MAP_SIZE: %s (size %u)", strerror(errno), size);
	return 0;
}

static int probe_vdso(struct probe_ctx *c)
{
	char *maps;
	int ret = 0;

	if (read_file("/proc/self/maps", &maps) < 0)
		return WHY(c, "can't read /proc/self/maps");
	if (!strstr(maps, "[vdso]"))
		ret = WHY(c, "no [vdso] in /proc/self/maps");
	free(maps);
	return ret;
}

static int probe_timer_ids(struct probe_ctx *c)
{
	if (prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0) < 0)
		return WHY(c, "%s (POSIX timers need Linux 6.17)", strerror(errno));
	return 0;
}

static int probe_freezer(struct probe_ctx *c)
{
	if (access("/sys/fs/cgroup/freezer/freezer.state", F_OK) &&
	    access("/sys/fs/cgroup/freezer/tasks", F_OK))
		return WHY(c, "/sys/fs/cgroup/freezer is not a mounted v1 freezer");
	return 0;
}

static int probe_subreaper(struct probe_ctx *c)
{
	int was = 0;

	if (prctl(PR_GET_CHILD_SUBREAPER, &was) || prctl(PR_SET_CHILD_SUBREAPER, was))
		return WHY(c, "%s", strerror(errno));
	return 0;
}

static int probe_ns_last_pid(struct probe_ctx *c)
{
	if (access("/proc/sys/kernel/ns_last_pid", W_OK))
		return WHY(c, "%s", strerror(errno));
	return 0;
}

static int probe_userfaultfd(struct probe_ctx *c)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0)
		return WHY(c, "%s", strerror(errno));
	if (ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		return WHY(c, "UFFDIO_API with WP_ASYNC: %s", strerror(errno));
	}
	close(fd);
	return 0;
}

static int probe_tcp_repair(struct probe_ctx *c)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0), ret = 0;

	if (fd < 0)
		return WHY(c, "socket: %s", strerror(errno));
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &one, sizeof(one)))
		ret = WHY(c, "%s", strerror(errno));
	close(fd);
	return ret;
}

static int probe_netlock(struct probe_ctx *c)
{
	int ret = netlock_probe();

	return ret ? WHY(c, "nft: %s (see the log)", strerror(-ret)) : 0;
}

static const struct {
	const char *name;
	int (*fn)(struct probe_ctx *c);
} probes[] = {
	{ "ptrace seize/interrupt", probe_ptrace },
	{ "ptrace regsets (xstate, sigmask, rseq)", probe_regsets },
	{ "ptrace peeksiginfo", probe_peeksiginfo },
	{ "process_vm_readv", probe_vm_readv },
	{ "pagemap with PFNs", probe_pagemap },
	{ "map_files", probe_map_files },
	{ "clone3 set_tid", probe_clone3_set_tid },
	{ "pidfd_open/pidfd_getfd", probe_pidfd_getfd },
	{ "kcmp", probe_kcmp },
	{ "memfd_create", probe_memfd },
	{ "MAP_FIXED_NOREPLACE", probe_fixed_noreplace },
	{ "PR_SET_MM_MAP", probe_mm_map },
	{ "vDSO", probe_vdso },
	{ "PR_TIMER_CREATE_RESTORE_IDS", probe_timer_ids },
	{ "cgroup v1 freezer", probe_freezer },
	{ "PR_SET_CHILD_SUBREAPER", probe_subreaper },
	{ "ns_last_pid", probe_ns_last_pid },
	{ "userfaultfd write-protect (async)", probe_userfaultfd },
	{ "TCP_REPAIR", probe_tcp_repair },
	{ "nftables network lock", probe_netlock },
};

int cr_check(void)
{
	struct probe_ctx c = { };
	size_t i, failed = 0;

	c.child = fork();
	if (c.child < 0) {
		pr_perror("fork");
		return -errno;
	}
	if (c.child == 0) {
		for (;;)
			pause();
	}
	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		c.why[0] = '\0';
		if (probes[i].fn(&c)) {
			printf("FAIL %s: %s\n", probes[i].name, c.why);
			failed++;
		} else {
			printf("ok   %s\n", probes[i].name);
		}
	}
	kill(c.child, SIGKILL);
	waitpid(c.child, NULL, __WALL);
	if (failed)
		printf("%zu of %zu probes failed\n", failed, ARRAY_SIZE(probes));
	return failed ? -ENOSYS : 0;
}
