/*
 * srun steps of the job.  Tasks that srun launches are slurmstepd's children,
 * wired to it (PMIx/PMI-2, I/O, signals) and to the srun client in the batch
 * tree: nothing of that can be restored on a new allocation yet, and the trees
 * of such a step registered as the node's would hide the batch tree.  So the
 * SPANK plugin tells the coordinator when a step begins and ends on a node,
 * and a checkpoint is refused while one runs (the job runs on; periodic
 * checkpoints take the next interval).  MPI launched with mpirun or mpiexec
 * through crmpi-rsh is what crjob checkpoints, and MPI steps (srun --mpi=pmix,
 * pmi2) are launched that way by the plugin (crjob srun): only the others,
 * or those of a job with CRJOB_SRUN=step, are srun steps here.
 *
 * crmpi-rsh marks the start of an MPI daemon the same way (J.launch-PID@NODE,
 * ended by the registration of the daemon's tree, in the same message): a
 * checkpoint taken between the agent's start of the daemon and that
 * registration would hold mpirun waiting for a daemon that no generation has.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"

static int find(char *const *v, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return i;
	return -1;
}

static int add(char **v, int *n, const char *s)
{
	if (find(v, *n, s) >= 0)
		return 0;
	if (*n == COORD_MAX_STEPS) {
		/* the oldest goes: a job of that many steps has ended most of them */
		free(v[0]);
		memmove(v, v + 1, --*n * sizeof(*v));
	}
	v[*n] = strdup(s);
	if (!v[*n])
		return -ENOMEM;
	++*n;
	return 0;
}

static void del(char **v, int *n, const char *s)
{
	int i = find(v, *n, s);

	if (i < 0)
		return;
	free(v[i]);
	memmove(v + i, v + i + 1, (--*n - i) * sizeof(*v));
}

int steps_update(struct coord *co, const Crjob__Msg *m)
{
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < m->n_steps_ended; i++) {
		del(co->steps, &co->nsteps, m->steps_ended[i]);
		ret = add(co->ended, &co->nended, m->steps_ended[i]);
		pr_info("job %s: step %s ended\n", co->job, m->steps_ended[i]);
	}
	for (i = 0; !ret && i < m->n_steps_begun; i++) {
		if (find(co->ended, co->nended, m->steps_begun[i]) >= 0)
			continue;
		ret = add(co->steps, &co->nsteps, m->steps_begun[i]);
		pr_info("job %s: step %s runs: no checkpoint until it ends\n", co->job,
			m->steps_begun[i]);
	}
	return ret;
}

const char *steps_running(const struct coord *co)
{
	return co->nsteps ? co->steps[0] : NULL;
}

void steps_why(const struct coord *co, char *buf, size_t len, bool advice)
{
	const char *s = steps_running(co);

	if (!s)
		snprintf(buf, len, "no step runs");
	else if (strstr(s, ".launch-"))
		snprintf(buf, len, "an MPI daemon is being started (%s)%s", s,
			 advice ? ": its tree is not registered yet, try again in a moment" : "");
	else
		snprintf(buf, len, "srun step %s runs%s", s,
			 advice ? ": the tasks of an srun step cannot be restored (MPI steps, "
			 "srun --mpi=pmix or pmi2, can: the plugin runs them with crjob srun "
			 "given crmpi= and no CRJOB_SRUN=step)" : "");
}

void steps_free(struct coord *co)
{
	while (co->nsteps)
		free(co->steps[--co->nsteps]);
	while (co->nended)
		free(co->ended[--co->nended]);
}
