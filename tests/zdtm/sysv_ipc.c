/*
 * System V semaphores and message queues used by a parent and its child: a
 * keyed set of four semaphores and a private one of two, a keyed queue
 * holding messages of several types and sizes.  After restore the ids, keys,
 * modes, values and messages are the same, and the kernel still names the
 * parent and the child as their last users (so a second checkpoint finds
 * them as well).
 */
#include <signal.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

#define NMSG	6
#define BIG	4000

struct msg {
	long mtype;
	char text[BIG];
};

static size_t msg_len(int i)
{
	return i == 3 ? BIG : (size_t)i * 17;
}

static void fill(struct msg *m, int i)
{
	m->mtype = 10 + i % 3;
	for (size_t j = 0; j < msg_len(i); j++)
		m->text[j] = (char)(i * 31 + j);
}

static void child_main(int sem, int msq)
{
	struct sembuf op = { .sem_num = 3, .sem_op = 1 };
	struct msg m;

	/* the child is the last to touch semaphore 3 and to receive */
	check(!semop(sem, &op, 1), "child semop");
	check(msgrcv(msq, &m, sizeof(m.text), 0, IPC_NOWAIT) == 0, "child msgrcv");
	zdtm_wait();
	exit(0);
}

static void check_sems(int sem, int priv, pid_t child)
{
	unsigned short v[4], p[2];
	const unsigned short want[4] = { 3, 0, 7, 1 };

	check(semctl(sem, 0, GETALL, v) == 0 && !memcmp(v, want, sizeof(v)),
	      "keyed set values %u %u %u %u", v[0], v[1], v[2], v[3]);
	check(semctl(priv, 0, GETALL, p) == 0 && p[0] == 5 && p[1] == 9,
	      "private set values %u %u", p[0], p[1]);
	for (int i = 0; i < 3; i++)
		check(semctl(sem, i, GETPID) == getpid(), "semaphore %d: last pid %d", i,
		      semctl(sem, i, GETPID));
	check(semctl(sem, 3, GETPID) == child, "semaphore 3: last pid %d, not the child",
	      semctl(sem, 3, GETPID));
}

static void check_msgs(int msq, pid_t child)
{
	struct msqid_ds ds;
	struct msg m, want;

	check(!msgctl(msq, IPC_STAT, &ds) && ds.msg_qnum == NMSG - 1 &&
	      (ds.msg_perm.mode & 0777) == 0620, "queue: %lu messages, mode %o", ds.msg_qnum,
	      ds.msg_perm.mode & 0777);
	check(ds.msg_lspid == getpid() && ds.msg_lrpid == child, "queue: last pids %d %d",
	      ds.msg_lspid, ds.msg_lrpid);
	for (int i = 1; i < NMSG; i++) {
		ssize_t n = msgrcv(msq, &m, sizeof(m.text), 0, IPC_NOWAIT);

		fill(&want, i);
		check(n == (ssize_t)msg_len(i) && m.mtype == want.mtype &&
		      !memcmp(m.text, want.text, n), "message %d differs (%zd bytes)", i, n);
	}
}

int main(void)
{
	key_t skey = 0x7b000000 | (getpid() & 0xffffff);
	key_t mkey = 0x7c000000 | (getpid() & 0xffffff);
	unsigned short init[4] = { 3, 0, 7, 0 }, pinit[2] = { 5, 9 };
	struct sembuf touch[2] = { { 0, 1, 0 }, { 0, -1, 0 } };
	int sem, priv, msq, st;
	struct msg m;
	pid_t child;
	FILE *ids;

	zdtm_init("sysv_ipc");
	sem = semget(skey, 4, IPC_CREAT | IPC_EXCL | 0640);
	priv = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
	msq = msgget(mkey, IPC_CREAT | IPC_EXCL | 0620);
	check(sem >= 0 && priv >= 0 && msq >= 0, "semget/msgget");
	/* for the runner's clean-up if we fail */
	ids = fopen("sysv-ids", "w");
	check(ids && fprintf(ids, "sem %d\nsem %d\nmsg %d\n", sem, priv, msq) > 0 && !fclose(ids),
	      "sysv-ids");
	check(!semctl(sem, 0, SETALL, init) && !semctl(priv, 0, SETALL, pinit), "SETALL");
	check(!semop(priv, touch, 2), "semop on the private set");
	for (int i = 0; i < 3; i++) {
		touch[0].sem_num = touch[1].sem_num = i;
		check(!semop(sem, touch, 2), "semop");	/* +1 -1: we are its last user */
	}
	touch[0].sem_num = touch[1].sem_num = 0;
	for (int i = 0; i < NMSG; i++) {
		fill(&m, i);
		check(!msgsnd(msq, &m, msg_len(i), 0), "msgsnd %d", i);
	}
	child = fork();
	if (child == 0)
		child_main(sem, msq);
	for (;;) {
		struct msqid_ds ds;

		check(!msgctl(msq, IPC_STAT, &ds), "msgctl");
		if (semctl(sem, 3, GETVAL) == 1 && ds.msg_qnum == NMSG - 1)
			break;
		usleep(1000);
	}
	if (zdtm_corrupt())
		semctl(priv, 1, SETVAL, 8);
	zdtm_ready();
	zdtm_wait();
	check(semget(skey, 0, 0) == sem && msgget(mkey, 0) == msq, "the keys find other objects");
	check_sems(sem, priv, child);
	check_msgs(msq, child);
	kill(child, SIGUSR2);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child: %#x", st);
	semctl(sem, 0, IPC_RMID);
	semctl(priv, 0, IPC_RMID);
	msgctl(msq, IPC_RMID, NULL);
	return zdtm_pass();
}
