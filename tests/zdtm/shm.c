/*
 * Shared memory between a parent and its child: MAP_SHARED|MAP_ANONYMOUS, a
 * memfd and an unlinked POSIX shared memory file, each mapped by both, plus a
 * private mapping of the memfd changed in memory; the memfd and a deleted file
 * also stay open as fds.  After restore both see the dumped contents and the
 * regions are still shared: what the child writes, the parent reads, and
 * what goes through the memfd fd shows in its mapping.
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

#define LEN (4 << 20)
#define NREG 3

static unsigned char *reg[NREG], *priv;

static void fill(unsigned char *p, int seed)
{
	for (size_t i = 0; i < LEN; i += 4096)
		p[i] = (unsigned char)(seed + i / 4096);
}

static void verify(const char *who)
{
	for (int r = 0; r < NREG; r++)
		for (size_t i = 0; i < LEN; i += 4096) {
			/* the child wrote the second half before the dump */
			int seed = i < LEN / 2 ? r : 100 + r;

			check(reg[r][i] == (unsigned char)(seed + i / 4096),
			      "%s: region %d page %zu", who, r, i / 4096);
		}
	check(priv[0] == 'P' && priv[4096] == (unsigned char)(1 + 1), "%s: private copy", who);
}

int main(void)
{
	int mfd, sfd, st, gone;
	char buf[8];
	pid_t child;

	zdtm_init("shm");
	reg[0] = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mfd = memfd_create("zdtm", 0);
	sfd = shm_open("/crd-zdtm-shm", O_RDWR | O_CREAT | O_EXCL, 0600);
	check(mfd >= 0 && sfd >= 0 && !ftruncate(mfd, LEN) && !ftruncate(sfd, LEN), "create");
	shm_unlink("/crd-zdtm-shm");
	reg[1] = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	reg[2] = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	check(reg[0] != MAP_FAILED && reg[1] != MAP_FAILED && reg[2] != MAP_FAILED, "mmap");
	for (int r = 0; r < NREG; r++)
		fill(reg[r], r);
	priv = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	check(priv != MAP_FAILED, "private mmap");
	priv[0] = 'P';
	close(sfd);
	check(lseek(mfd, 4096, SEEK_SET) == 4096, "lseek memfd");
	gone = open("gone.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	check(gone >= 0 && write(gone, "hello", 5) == 5 && !unlink("gone.dat") &&
	      lseek(gone, 2, SEEK_SET) == 2, "deleted file");
	child = fork();
	if (child == 0) {
		for (int r = 0; r < NREG; r++)
			for (size_t i = LEN / 2; i < LEN; i += 4096)
				reg[r][i] = (unsigned char)(100 + r + i / 4096);
		check(write(1, "", 0) == 0, "write");
		zdtm_wait();
		verify("child");
		for (int r = 0; r < NREG; r++)
			reg[r][8] = 0x77;	/* the parent must see this */
		return 0;
	}
	while (reg[2][LEN - 4096] != (unsigned char)(100 + 2 + LEN / 4096 - 1))
		usleep(1000);
	if (zdtm_corrupt())
		reg[1][4096] ^= 1;
	zdtm_ready();
	zdtm_wait();
	verify("parent");
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child failed");
	for (int r = 0; r < NREG; r++)
		check(reg[r][8] == 0x77, "region %d is no longer shared with the child", r);
	check(lseek(mfd, 0, SEEK_CUR) == 4096, "memfd offset");
	check(pwrite(mfd, "M", 1, 12288) == 1 && reg[1][12288] == 'M',
	      "memfd fd and mapping are no longer one object");
	check(read(gone, buf, 3) == 3 && !memcmp(buf, "llo", 3), "deleted file offset or data");
	return zdtm_pass();
}
