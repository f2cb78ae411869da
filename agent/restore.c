/*
 * Restart on this node: RESTORE runs `crd restore` for each tree (at most
 * max_parallel at work at once), each held at its pre-resume hook, restored
 * and stopped; RESUME binds them like they were bound where they were dumped,
 * lets them run and unlocks their network; KILL undoes a restore.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "agent.h"

int restore_start_tree(struct job *j, struct tree *t)
{
	static const int fixed = 14;
	char gen[24], owner[16], **argv;
	int argc = fixed, i, ret;

	/*
	 * the fixed arguments, --generation, a --remap-ip per node, a
	 * --capture-path per capture directory, --pidns, NULL
	 */
	argv = calloc(fixed + 2 + 2 * j->n_remap + 2 * j->a->conf.n_capture + 2, sizeof(*argv));
	if (!argv) {
		tree_fail(j, t, "out of memory");
		return -ENOMEM;
	}
	memcpy(argv, (char *[]){ j->a->crd, "restore", "--store", j->store, "--job",
				 j->from ? j->from : j->id,
				 "--writer", t->writer, "--detach", "--keep-net-locked",
				 "--owner", owner, "--action-script", j->a->self },
	       fixed * sizeof(*argv));
	snprintf(owner, sizeof(owner), "%u", (unsigned)j->owner);
	if (j->gen) {
		snprintf(gen, sizeof(gen), "%llu", (unsigned long long)j->gen);
		argv[argc++] = "--generation";
		argv[argc++] = gen;
	}
	for (i = 0; i < j->n_remap; i++) {
		argv[argc++] = "--remap-ip";
		argv[argc++] = j->remap[i];
	}
	/* the owner's missing files there are recreated though the owner could not */
	for (i = 0; i < j->a->conf.n_capture; i++) {
		argv[argc++] = "--capture-path";
		argv[argc++] = j->a->conf.capture[i];
	}
	if (j->pidns)
		argv[argc++] = "--pidns";
	t->state = T_RESTORING;
	t->restored = false;
	ret = tree_open_log(j, t, "restore");
	if (!ret)
		ret = tree_spawn_crd(j, t, argv, true, NULL);
	free(argv);
	if (ret)
		tree_fail(j, t, "can't start crd restore: %s", strerror(-ret));
	return ret;
}

static void free_remap(struct job *j)
{
	int i;

	for (i = 0; i < j->n_remap; i++)
		free(j->remap[i]);
	free(j->remap);
	j->remap = NULL;
	j->n_remap = 0;
}

int job_restore(struct job *j, Crjob__IpRemap **remap, size_t n_remap)
{
	size_t i;

	free_remap(j);
	j->remap = calloc(n_remap ? n_remap : 1, sizeof(*j->remap));
	if (!j->remap)
		return -ENOMEM;
	for (i = 0; i < n_remap; i++) {
		if (asprintf(&j->remap[i], "%s=%s", remap[i]->old_ip, remap[i]->new_ip) < 0)
			return -ENOMEM;
		j->n_remap++;
	}
	j->phase = J_RESTORING;
	alog("job %s: restoring %d trees of generation %llu\n", j->id, j->ntrees,
	     (unsigned long long)j->gen);
	for (i = 0; i < (size_t)j->ntrees; i++)
		j->trees[i].state = T_QUEUED;
	agent_pump(j->a);
	job_progress(j);
	return 0;
}

/*
 * The restored tree joins its Slurm job (slurm-cg.c) while still stopped, so
 * that no process of it runs where scancel cannot reach it.  A job that is
 * not Slurm's, or a cluster without PrologFlags=Contain, keeps it here.
 */
static void adopt_tree(struct job *j, struct tree *t)
{
	char why[PATH_MAX + 64];
	pid_t *pids;
	int n, ret;

	if (tree_pids(t->pid, &pids, &n))
		return;
	ret = slurm_adopt(j->a, j->id, j->owner, pids, n, why, sizeof(why));
	free(pids);
	if (!ret)
		alog("job %s: tree %d (%d processes) joined the job's cgroup\n", j->id,
		     t->pid, n);
	else
		alog("job %s: tree %d stays outside Slurm's cgroups: %s\n", j->id, t->pid, why);
}

int job_resume(struct job *j)
{
	char why[256];
	int i;

	j->phase = J_RESUMING;
	for (i = 0; i < j->ntrees; i++) {
		struct tree *t = &j->trees[i];

		/* bound while still stopped: it never runs on the wrong cores */
		if (t->cpuset && topo_rebind(j->a->topo, t->pid, t->cpuset, why, sizeof(why)))
			alog("job %s: %s; it runs unbound\n", j->id, why);
		adopt_tree(j, t);
		t->state = T_RESUMING;
		if (tree_answer(t, true))
			tree_fail(j, t, "its crd restore is gone before the resume");
	}
	job_progress(j);
	return 0;
}

/* SIGKILL every process of a tree this agent restored, then unlock its network */
void kill_tree_now(struct job *j, struct tree *t)
{
	char why[256];
	pid_t *pids;
	int n, i;

	if (!t->restored) {
		/* not ours: a failed restore leaves nothing, a running original is not killed */
		t->state = T_DONE;
		return;
	}
	if (auth_tree(t->pid, j->owner, why, sizeof(why)) == 0 &&
	    tree_pids(t->pid, &pids, &n) == 0) {
		for (i = 0; i < n; i++)
			kill(pids[i], SIGKILL);
		free(pids);
		alog("job %s: killed restored tree %d (%d processes)\n", j->id, t->pid, n);
	} else if (kill(t->pid, 0) == 0) {
		alog("job %s: tree %d not killed: %s\n", j->id, t->pid, why);
	}
	t->restored = false;
	tree_net_unlock(j, t);
}

int job_kill(struct job *j, char *why, size_t size)
{
	int i;

	if (j->deadline)
		event_del(j->deadline);
	j->phase = J_KILLING;
	for (i = 0; i < j->ntrees; i++) {
		struct tree *t = &j->trees[i];

		/* a crd restore told "no" at pre-resume kills what it restored itself */
		tree_answer(t, false);
		if (t->crd && t->state != T_UNLOCKING)
			t->state = T_RELEASING;
		else if (!t->crd)
			kill_tree_now(j, t);
	}
	job_progress(j);
	return 0;
}

void job_root_ended(struct agent *a, pid_t pid, int status)
{
	struct job *j;
	int i;

	for (j = a->jobs; j; j = j->next)
		for (i = 0; i < j->ntrees; i++) {
			if (j->trees[i].pid != pid)
				continue;
			/* the oldest status goes first */
			if (j->n_ended == JOB_MAX_ENDED)
				memmove(&j->ended[0], &j->ended[1],
					--j->n_ended * sizeof(j->ended[0]));
			j->ended[j->n_ended].pid = pid;
			j->ended[j->n_ended++].status = status;
			alog("job %s: restored tree %d ended (wait status 0x%x)\n", j->id, pid,
			     status);
			return;
		}
}

int job_root_status(const struct job *j, pid_t pid, int *status)
{
	int i;

	for (i = j->n_ended - 1; i >= 0; i--)
		if (j->ended[i].pid == pid) {
			*status = j->ended[i].status;
			return 0;
		}
	for (i = 0; i < j->ntrees; i++)
		if (j->trees[i].pid == pid)
			return kill(pid, 0) == 0 ? -EAGAIN : -ESRCH;
	return -ESRCH;
}
