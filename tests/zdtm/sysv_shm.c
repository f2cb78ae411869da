/*
 * System V shared memory between a parent and its child: a keyed segment
 * and a private one already marked for removal, both attached by both.
 * After restore both see the contents, the ids and the key are the same,
 * and what one writes the other reads.
 */
#include <signal.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

#define LEN (1 << 20)

int main(void)
{
	int keyed, priv, st;
	unsigned char *a, *b;
	struct shmid_ds ds;
	key_t key = 0x7a000000 | (getpid() & 0xffffff);
	pid_t child;

	zdtm_init("sysv_shm");
	keyed = shmget(key, LEN, IPC_CREAT | IPC_EXCL | 0640);
	priv = shmget(IPC_PRIVATE, LEN, IPC_CREAT | 0600);
	check(keyed >= 0 && priv >= 0, "shmget");
	a = shmat(keyed, NULL, 0);
	b = shmat(priv, NULL, 0);
	check(a != (void *)-1 && b != (void *)-1, "shmat");
	shmctl(priv, IPC_RMID, NULL);	/* goes away with its last user */
	for (int i = 0; i < LEN; i += 4096) {
		a[i] = i / 4096 + 1;
		b[i] = i / 4096 + 2;
	}
	child = fork();
	if (child == 0) {
		zdtm_wait();
		for (int i = 0; i < LEN; i += 4096)
			check(a[i] == (unsigned char)(i / 4096 + 1) && b[i] == (unsigned char)(i / 4096 + 2),
			      "child: page %d", i / 4096);
		a[1] = 0x55;
		b[1] = 0x66;
		return 0;
	}
	if (zdtm_corrupt())
		a[4096] = 0;
	zdtm_ready();
	zdtm_wait();
	/* TEST_SHM_REMOVED: someone removed the keyed segment while we were frozen */
	if (getenv("TEST_SHM_REMOVED"))
		check(!shmctl(keyed, IPC_STAT, &ds) && (ds.shm_perm.mode & SHM_DEST) &&
		      shmget(key, 0, 0) < 0, "the removed segment is not removed");
	else
		check(shmget(key, 0, 0) == keyed, "the key no longer finds the segment");
	check(!shmctl(keyed, IPC_STAT, &ds) && (ds.shm_perm.mode & 0777) == 0640 &&
	      ds.shm_segsz == LEN, "segment mode or size");
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child: %#x", st);
	check(a[1] == 0x55 && b[1] == 0x66, "the segments are no longer shared");
	shmctl(keyed, IPC_RMID, NULL);
	return zdtm_pass();
}
