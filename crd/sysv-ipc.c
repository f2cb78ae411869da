/*
 * System V semaphore sets and message queues.  Unlike segments, which the
 * tree's mappings name, these are linked to no process; the kernel only
 * records who operated on them last (sempid per semaphore, lspid/lrpid per
 * queue).  A set or queue is the tree's when one of those is a process of
 * the tree, and restore makes that true again by replaying one harmless
 * operation from the same process, so that the next checkpoint finds it too.
 *
 * Objects are recreated with their id (via /proc/sys/kernel/{sem,msg}_next_id),
 * key, mode, owner, values and messages; one that outlived the tree at the
 * same id and key is taken and set back to the dumped state.  Semaphore undo
 * values (SEM_UNDO) are not kept: the kernel has no interface to read them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cr-dump.h"
#include "cr-restore.h"
#include "log.h"
#include "sysv.h"
#include "util.h"

#ifndef MSG_COPY
#define MSG_COPY	040000
#endif
/* the replayed message: a type the tree is unlikely to use itself */
#define REPLAY_MTYPE	LONG_MAX

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

struct msgbuf_hdr {
	long mtype;
	char mtext[];
};

static bool in_tree(const struct dump_ctx *ctx, pid_t pid)
{
	size_t i;

	for (i = 0; pid > 0 && i < ctx->nr_tasks; i++)
		if (ctx->tasks[i].pid == pid)
			return true;
	return false;
}

/* What we see through semctl/msgctl is our IPC namespace; the tree's must be the same. */
static bool same_ipc_ns(pid_t pid)
{
	struct stat a, b;
	char path[64];

	/* a zombie root has no namespaces to show: its children are ours, as it was */
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", pid);
	if (stat(path, &a) || stat("/proc/self/ns/ipc", &b))
		return true;
	return a.st_ino == b.st_ino;
}

static Crd__SysvSemEntry *sem_entry(struct dump_ctx *ctx, int id, const struct semid_ds *ds,
				    const uint32_t *pids)
{
	struct arena *a = &ctx->arena;
	Crd__SysvSemEntry *e = arena_alloc(a, sizeof(*e));
	unsigned short *vals = calloc(ds->sem_nsems, sizeof(*vals));
	union semun arg = { .array = vals };
	size_t i;

	if (e) {
		crd__sysv_sem_entry__init(e);
		e->values = arena_alloc(a, ds->sem_nsems * sizeof(*e->values));
		e->last_pids = arena_alloc(a, ds->sem_nsems * sizeof(*e->last_pids));
	}
	if (!e || !e->values || !e->last_pids || !vals || semctl(id, 0, GETALL, arg) < 0) {
		pr_err("System V semaphore set %d: can't read it: %s\n", id, strerror(errno));
		free(vals);
		return NULL;
	}
	e->id = id;
	e->key = ds->sem_perm.__key;
	e->mode = ds->sem_perm.mode & 0777;
	e->uid = ds->sem_perm.uid;
	e->gid = ds->sem_perm.gid;
	e->n_values = e->n_last_pids = ds->sem_nsems;
	for (i = 0; i < ds->sem_nsems; i++) {
		e->values[i] = vals[i];
		e->last_pids[i] = in_tree(ctx, pids[i]) ? pids[i] : 0;
	}
	free(vals);
	return e;
}

static int dump_sems(struct dump_ctx *ctx, Crd__Inventory *inv)
{
	struct seminfo si;
	union semun arg = { .__buf = &si };
	int max = semctl(0, 0, SEM_INFO, arg), idx;

	for (idx = 0; idx <= max; idx++) {
		struct semid_ds ds;
		union semun sarg = { .buf = &ds };
		int id = semctl(idx, 0, SEM_STAT, sarg);
		uint32_t *pids;
		bool ours = false;
		size_t i;

		if (id < 0)
			continue;
		pids = calloc(ds.sem_nsems + 1, sizeof(*pids));
		if (!pids)
			return -ENOMEM;
		for (i = 0; i < ds.sem_nsems; i++) {
			pids[i] = semctl(id, i, GETPID);
			ours |= in_tree(ctx, pids[i]);
		}
		if (ours && arena_grow(&ctx->arena, (void **)&inv->sysv_sems, &ctx->cap_sems,
				       inv->n_sysv_sems + 1, sizeof(*inv->sysv_sems))) {
			free(pids);
			return -ENOMEM;
		}
		if (ours)
			inv->sysv_sems[inv->n_sysv_sems] = sem_entry(ctx, id, &ds, pids);
		free(pids);
		if (!ours)
			continue;
		if (!inv->sysv_sems[inv->n_sysv_sems])
			return -EIO;
		pr_info("System V semaphore set %d (key %#x, %lu semaphores)\n", id,
			ds.sem_perm.__key, ds.sem_nsems);
		inv->n_sysv_sems++;
	}
	return 0;
}

static long msg_max(void)
{
	char *buf;
	long v = 8192;

	if (read_file("/proc/sys/kernel/msgmax", &buf) >= 0) {
		v = strtol(buf, NULL, 10);
		free(buf);
	}
	return v > 0 ? v : 8192;
}

/* Every message, oldest first, read with MSG_COPY: the queue stays as it is. */
static int read_msgs(struct arena *a, Crd__SysvMsgEntry *e, int id, size_t qnum)
{
	long max = msg_max();
	struct msgbuf_hdr *m = malloc(sizeof(*m) + max);
	size_t i;

	e->msgs = arena_alloc(a, (qnum + 1) * sizeof(*e->msgs));
	if (!m || !e->msgs) {
		free(m);
		return -ENOMEM;
	}
	for (i = 0; i < qnum; i++) {
		ssize_t n = msgrcv(id, m, max, i, IPC_NOWAIT | MSG_COPY | MSG_NOERROR);
		Crd__SysvMsg *s = arena_alloc(a, sizeof(*s));

		if (n < 0 || !s) {
			pr_err("System V message queue %d: can't read message %zu: %s\n", id, i,
			       n < 0 ? strerror(errno) : "no memory");
			free(m);
			return -EIO;
		}
		crd__sysv_msg__init(s);
		s->mtype = m->mtype;
		s->data.len = n;
		s->data.data = arena_alloc(a, n + 1);
		if (!s->data.data) {
			free(m);
			return -ENOMEM;
		}
		memcpy(s->data.data, m->mtext, n);
		e->msgs[e->n_msgs++] = s;
	}
	free(m);
	return 0;
}

static int dump_one_msq(struct dump_ctx *ctx, Crd__Inventory *inv, int id,
			const struct msqid_ds *ds)
{
	Crd__SysvMsgEntry *e = arena_alloc(&ctx->arena, sizeof(*e));
	int ret;

	if (!e || arena_grow(&ctx->arena, (void **)&inv->sysv_msgs, &ctx->cap_msgs,
			     inv->n_sysv_msgs + 1, sizeof(*inv->sysv_msgs)))
		return -ENOMEM;
	crd__sysv_msg_entry__init(e);
	e->id = id;
	e->key = ds->msg_perm.__key;
	e->mode = ds->msg_perm.mode & 0777;
	e->uid = ds->msg_perm.uid;
	e->gid = ds->msg_perm.gid;
	e->qbytes = ds->msg_qbytes;
	if (in_tree(ctx, ds->msg_lspid)) {
		e->has_last_send_pid = true;
		e->last_send_pid = ds->msg_lspid;
	}
	if (in_tree(ctx, ds->msg_lrpid)) {
		e->has_last_recv_pid = true;
		e->last_recv_pid = ds->msg_lrpid;
	}
	ret = read_msgs(&ctx->arena, e, id, ds->msg_qnum);
	if (ret)
		return ret;
	pr_info("System V message queue %d (key %#x, %zu messages)\n", id, e->key, e->n_msgs);
	inv->sysv_msgs[inv->n_sysv_msgs++] = e;
	return 0;
}

static int dump_msgs(struct dump_ctx *ctx, Crd__Inventory *inv)
{
	struct msginfo mi;
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&mi), idx, ret;

	for (idx = 0; idx <= max; idx++) {
		struct msqid_ds ds;
		int id = msgctl(idx, MSG_STAT, &ds);

		if (id < 0 || (!in_tree(ctx, ds.msg_lspid) && !in_tree(ctx, ds.msg_lrpid)))
			continue;
		ret = dump_one_msq(ctx, inv, id, &ds);
		if (ret)
			return ret;
	}
	return 0;
}

int sysv_ipc_dump(struct dump_ctx *ctx, Crd__Inventory *inv)
{
	int ret;

	if (!same_ipc_ns(ctx->opts->pid)) {
		pr_warn("tree %d has its own IPC namespace: its semaphores and message queues "
			"are not dumped\n", ctx->opts->pid);
		return 0;
	}
	ret = dump_sems(ctx, inv);
	if (!ret)
		ret = dump_msgs(ctx, inv);
	return ret;
}

/* ------------------------------------------------------------------ restore */

static int set_sem(const Crd__SysvSemEntry *e)
{
	unsigned short *vals = calloc(e->n_values + 1, sizeof(*vals));
	struct semid_ds ds;
	union semun arg = { .array = vals };
	int ret = 0;
	size_t i;

	if (!vals)
		return -ENOMEM;
	for (i = 0; i < e->n_values; i++)
		vals[i] = e->values[i];
	if (semctl(e->id, 0, SETALL, arg) < 0)
		ret = -errno;
	free(vals);
	arg.buf = &ds;
	if (!ret && semctl(e->id, 0, IPC_STAT, arg) == 0) {
		ds.sem_perm.uid = e->uid;
		ds.sem_perm.gid = e->gid;
		ds.sem_perm.mode = e->mode;
		if (semctl(e->id, 0, IPC_SET, arg) < 0)
			ret = -errno;
	}
	return ret;
}

/* 1: taken as it was (not ours to remove), 0: made, -errno */
static int restore_sem(const Crd__SysvSemEntry *e)
{
	struct semid_ds ds;
	union semun arg = { .buf = &ds };
	int id, ret, made = 0;

	if (semctl(e->id, 0, IPC_STAT, arg) == 0) {
		if (ds.sem_perm.__key != e->key || ds.sem_nsems != e->n_values) {
			pr_err("System V semaphore id %u is taken by another set (key %#x)\n",
			       e->id, ds.sem_perm.__key);
			return -EEXIST;
		}
	} else {
		ret = sysv_set_next_id("sem", e->id);
		id = ret ? -1 : semget(e->key, e->n_values, IPC_CREAT | IPC_EXCL | e->mode);
		sysv_set_next_id("sem", -1);
		if (id < 0 || (uint32_t)id != e->id) {
			pr_err("System V semaphore set %u (key %#x): can't recreate it: %s\n", e->id,
			       e->key, id < 0 ? strerror(errno) : "got another id");
			if (id >= 0)
				semctl(id, 0, IPC_RMID);
			return -EEXIST;
		}
		made = 1;
	}
	ret = set_sem(e);
	if (ret) {
		pr_err("System V semaphore set %u: can't set it: %s\n", e->id, strerror(-ret));
		if (made)
			semctl(e->id, 0, IPC_RMID);
		return ret;
	}
	return !made;
}

static int fill_msq(const Crd__SysvMsgEntry *e)
{
	long max = msg_max();
	struct msgbuf_hdr *m = malloc(sizeof(*m) + max);
	struct msqid_ds ds;
	size_t i;
	int ret = 0;

	if (!m)
		return -ENOMEM;
	/* a queue that outlived the tree: back to what the image holds */
	while (msgrcv(e->id, m, max, 0, IPC_NOWAIT | MSG_NOERROR) >= 0)
		;
	if (!msgctl(e->id, IPC_STAT, &ds)) {
		ds.msg_perm.uid = e->uid;
		ds.msg_perm.gid = e->gid;
		ds.msg_perm.mode = e->mode;
		ds.msg_qbytes = e->qbytes;
		if (msgctl(e->id, IPC_SET, &ds) < 0)
			pr_warn("System V message queue %u: can't set its size to %lu: %s\n",
				e->id, e->qbytes, strerror(errno));
	}
	for (i = 0; !ret && i < e->n_msgs; i++) {
		m->mtype = e->msgs[i]->mtype;
		memcpy(m->mtext, e->msgs[i]->data.data, e->msgs[i]->data.len);
		if (msgsnd(e->id, m, e->msgs[i]->data.len, IPC_NOWAIT) < 0)
			ret = -errno;
	}
	free(m);
	return ret;
}

static int restore_msq(const Crd__SysvMsgEntry *e)
{
	struct msqid_ds ds;
	int id, ret, made = 0;

	if (msgctl(e->id, IPC_STAT, &ds) == 0) {
		if (ds.msg_perm.__key != e->key) {
			pr_err("System V message queue id %u is taken by another queue (key %#x)\n",
			       e->id, ds.msg_perm.__key);
			return -EEXIST;
		}
	} else {
		ret = sysv_set_next_id("msg", e->id);
		id = ret ? -1 : msgget(e->key, IPC_CREAT | IPC_EXCL | e->mode);
		sysv_set_next_id("msg", -1);
		if (id < 0 || (uint32_t)id != e->id) {
			pr_err("System V message queue %u (key %#x): can't recreate it: %s\n", e->id,
			       e->key, id < 0 ? strerror(errno) : "got another id");
			if (id >= 0)
				msgctl(id, IPC_RMID, NULL);
			return -EEXIST;
		}
		made = 1;
	}
	ret = fill_msq(e);
	if (ret) {
		pr_err("System V message queue %u: can't refill it: %s\n", e->id, strerror(-ret));
		if (made)
			msgctl(e->id, IPC_RMID, NULL);
		return ret;
	}
	return !made;
}

int sysv_ipc_restore(struct restore_ctx *ctx)
{
	const Crd__Inventory *inv = ctx->inv;
	size_t i, n = inv->n_sysv_sems + inv->n_sysv_msgs;
	int ret = 0;

	if (!n)
		return 0;
	ctx->ipc_made = calloc(n, sizeof(*ctx->ipc_made));
	if (!ctx->ipc_made)
		return -ENOMEM;
	for (i = 0; !ret && i < n; i++) {
		ret = i < inv->n_sysv_sems ? restore_sem(inv->sysv_sems[i])
					   : restore_msq(inv->sysv_msgs[i - inv->n_sysv_sems]);
		ctx->ipc_made[i] = !ret;
		if (ret == 1)
			ret = 0;
	}
	return ret;
}

void sysv_ipc_undo(struct restore_ctx *ctx)
{
	const Crd__Inventory *inv = ctx->inv;
	size_t i;

	for (i = 0; ctx->ipc_made && i < inv->n_sysv_sems + inv->n_sysv_msgs; i++) {
		if (!ctx->ipc_made[i])
			continue;
		if (i < inv->n_sysv_sems)
			semctl(inv->sysv_sems[i]->id, 0, IPC_RMID);
		else
			msgctl(inv->sysv_msgs[i - inv->n_sysv_sems]->id, IPC_RMID, NULL);
	}
	free(ctx->ipc_made);
	ctx->ipc_made = NULL;
}

/*
 * The last operation comes from the process that made it before: one SETVAL
 * per semaphore (to the value it has), and for a queue an empty message sent
 * by the last sender and taken by the last receiver.
 */
static void replay_msq(const Crd__SysvMsgEntry *e, const struct task_calls *tc)
{
	struct msgbuf_hdr m = { .mtype = REPLAY_MTYPE };
	uint32_t snd = e->has_last_send_pid ? e->last_send_pid : 0;
	uint32_t rcv = e->has_last_recv_pid ? e->last_recv_pid : 0;
	uint64_t addr;
	long r = 0;

	if (snd)
		r = tc->poke(tc->arg, snd, &m, sizeof(m), &addr) ?:
		    tc->call(tc->arg, snd, __NR_msgsnd, e->id, addr, 0, IPC_NOWAIT, 0);
	else
		r = msgsnd(e->id, &m, 0, IPC_NOWAIT) ? -errno : 0;
	if (!r && rcv)
		r = tc->poke(tc->arg, rcv, &m, sizeof(m), &addr);
	if (!r && rcv)
		r = tc->call(tc->arg, rcv, __NR_msgrcv, e->id, addr, 0, REPLAY_MTYPE, IPC_NOWAIT);
	else if (!r)
		r = msgrcv(e->id, &m, 0, REPLAY_MTYPE, IPC_NOWAIT) < 0 ? -errno : 0;
	if (r < 0)
		pr_warn("System V message queue %u: can't make the tree its last user again: %s\n",
			e->id, strerror(-r));
}

void sysv_ipc_replay(const Crd__Inventory *inv, const struct task_calls *tc)
{
	size_t i, j;
	long r;

	for (i = 0; i < inv->n_sysv_sems; i++) {
		const Crd__SysvSemEntry *e = inv->sysv_sems[i];

		for (j = 0; j < e->n_last_pids; j++) {
			if (!e->last_pids[j])
				continue;
			r = tc->call(tc->arg, e->last_pids[j], __NR_semctl, e->id, j, SETVAL,
				     e->values[j], 0);
			if (r < 0)
				pr_warn("System V semaphore %u/%zu: can't make pid %u its last "
					"user again: %s\n", e->id, j, e->last_pids[j], strerror(-r));
		}
	}
	for (i = 0; i < inv->n_sysv_msgs; i++)
		replay_msq(inv->sysv_msgs[i], tc);
}
