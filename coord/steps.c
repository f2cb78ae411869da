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
 */
#include <errno.h>
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
		pr_info("job %s: srun step %s ended\n", co->job, m->steps_ended[i]);
	}
	for (i = 0; !ret && i < m->n_steps_begun; i++) {
		if (find(co->ended, co->nended, m->steps_begun[i]) >= 0)
			continue;
		ret = add(co->steps, &co->nsteps, m->steps_begun[i]);
		pr_info("job %s: srun step %s runs: no checkpoint until it ends\n", co->job,
			m->steps_begun[i]);
	}
	return ret;
}

const char *steps_running(const struct coord *co)
{
	return co->nsteps ? co->steps[0] : NULL;
}

void steps_free(struct coord *co)
{
	while (co->nsteps)
		free(co->steps[--co->nsteps]);
	while (co->nended)
		free(co->ended[--co->nended]);
}
