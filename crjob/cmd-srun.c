/*
 * crjob srun --rsh CRMPI-RSH [--mpirun PATH] [--mpiexec PATH] [--iface IF]
 *            [--dry-run] -- SRUN [SRUN-OPTIONS] PROGRAM [ARG...]
 *
 * An MPI step of a --checkpoint batch job, launched so that crjob can restore
 * it.  srun --mpi=pmix and --mpi=pmi2 ranks hang off slurmstepd: PMIx/PMI-2,
 * I/O and signals all go through a process outside any tree crjob dumps, and
 * the srun client in the batch tree talks to slurmctld and to the old nodes'
 * slurmstepds, none of which a restore can bring back.  So the SPANK plugin
 * (in srun, before srun asks Slurm for anything) execs this in srun's place,
 * and this execs the MPI library's own launcher with the same ranks on the
 * same nodes:
 *
 *   --mpi=pmix*  Open MPI:  mpirun --host N1:K1,... -np N --bind-to none
 *                           -x VAR... PROGRAM ARGS
 *   --mpi=pmi2   MPICH:     mpiexec.hydra [-iface IF] -hosts N1:K1,... -n N
 *                           PROGRAM ARGS   (IF: the plugin's iface=)
 *
 * both with crmpi-rsh as their remote-start agent: the daemons (orted,
 * hydra_pmi_proxy) are started by the node agents inside the job's extern
 * step, and every connection between launcher, daemons and ranks has both
 * ends in trees the job's checkpoints hold: the route "mpirun inside sbatch"
 * of the plugin's header.  The launcher keeps srun's PID, stdio and exit
 * status, so the batch script sees its srun run and end as before.
 *
 * Ranks per node follow srun's block distribution: the options -n, -N,
 * --ntasks-per-node (else SLURM_NTASKS, SLURM_NNODES, SLURM_NTASKS_PER_NODE,
 * as srun reads them), at least one task per node, then each node filled up
 * to its CPUs (SLURM_JOB_CPUS_PER_NODE) or --ntasks-per-node, in Slurm's node
 * order.  mpirun forwards only OMPI_* variables by itself; srun exports the
 * whole environment, so every other variable goes with -x (Slurm's own
 * SLURM_* and PMI variables describe the batch step and stay behind).
 *
 * Anything else runs as the srun it was, with CRJOB_SRUN=step so that the
 * plugin lets it be: a step without --mpi (or SLURM_MPI_TYPE) of pmix or pmi2,
 * an srun option with no equivalent in the launcher (said on stderr, with the
 * consequence: no checkpoint while the step runs), a layout that does not
 * fit the allocation (srun says why).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crjob.h"

#define SRUN_MAX_NODES		4096
#define SRUN_MAX_ARGS		4096

extern char **environ;

enum srun_mpi { MPI_NONE, MPI_OMPI, MPI_HYDRA };

struct srun_step {
	const char *mpi;		/* --mpi, else $SLURM_MPI_TYPE */
	long ntasks, nodes, per_node;	/* 0: not given */
	char **prog;			/* PROGRAM ARG... */
	const char *why;		/* the option that cannot be translated */
};

struct layout {
	char (*names)[256];
	long count[SRUN_MAX_NODES];	/* ranks per node */
	int n;
	long ntasks;
};

static long env_long(const char *name)
{
	const char *v = getenv(name);

	return v ? strtol(v, NULL, 10) : 0;
}

/* the value of option o at argv[*i] ("--name=V", "--name V", "-XV", "-X V"), or NULL */
static const char *opt_value(char **argv, int *i, const char *lname, char sname)
{
	const char *a = argv[*i];
	size_t l = strlen(lname);

	if (!strncmp(a, "--", 2) && !strncmp(a + 2, lname, l)) {
		if (a[2 + l] == '=')
			return a + 3 + l;
		if (a[2 + l] == '\0' && argv[*i + 1])
			return argv[++*i];
		return NULL;
	}
	if (sname && a[0] == '-' && a[1] == sname) {
		if (a[2])
			return a + 2;
		if (argv[*i + 1])
			return argv[++*i];
	}
	return NULL;
}

static int number(const char *v, long *out)
{
	char *end;

	*out = v ? strtol(v, &end, 10) : 0;
	return v && *v && !*end && *out > 0 ? 0 : -EINVAL;
}

/* srun's options as far as a launcher can honour them; step->why if not */
static void parse_srun(char **argv, struct srun_step *step)
{
	int i;

	step->mpi = getenv("SLURM_MPI_TYPE");
	step->ntasks = env_long("SLURM_NTASKS");
	step->nodes = env_long("SLURM_NNODES");
	step->per_node = env_long("SLURM_NTASKS_PER_NODE");
	for (i = 1; argv[i]; i++) {
		const char *a = argv[i], *v;
		long *num = NULL;

		if (a[0] != '-' || !a[1]) {
			/* after an unknown option this may be its value: read on for --mpi */
			if (step->why)
				continue;
			step->prog = &argv[i];
			return;
		}
		if ((v = opt_value(argv, &i, "mpi", 0))) {
			step->mpi = v;
			continue;
		}
		if ((v = opt_value(argv, &i, "ntasks-per-node", 0)))
			num = &step->per_node;
		else if ((v = opt_value(argv, &i, "ntasks", 'n')))
			num = &step->ntasks;
		else if ((v = opt_value(argv, &i, "nodes", 'N')))
			num = &step->nodes;
		else if (!strcmp(a, "--export=ALL"))
			continue;
		if ((!num || number(v, num)) && !step->why)
			step->why = a;
	}
	if (!step->why)
		step->why = "(no program)";
}

static enum srun_mpi mpi_kind(const char *mpi)
{
	if (!mpi)
		return MPI_NONE;
	if (!strncmp(mpi, "pmix", 4))
		return MPI_OMPI;
	if (!strcmp(mpi, "pmi2"))
		return MPI_HYDRA;
	return MPI_NONE;
}

static int add_name(const char *line, void *arg)
{
	struct layout *l = arg;

	if (l->n == SRUN_MAX_NODES)
		return -E2BIG;
	snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", line);
	return 0;
}

/* srun's block distribution of step over the allocation; -ERANGE if it does not fit */
static int plan(const struct srun_step *step, struct layout *l)
{
	static long cpus[SRUN_MAX_NODES];
	long left;
	int i, nodes, ret;

	ret = slurm_hostnames(getenv("SLURM_JOB_NODELIST"), add_name, l);
	if (ret)
		return ret;
	if (slurm_counts(getenv("SLURM_JOB_CPUS_PER_NODE"), cpus, SRUN_MAX_NODES) != l->n)
		return -EINVAL;
	nodes = step->nodes ? step->nodes : l->n;
	if (nodes > l->n)
		return -ERANGE;
	l->ntasks = step->ntasks ? step->ntasks :
		    step->per_node ? (long)nodes * step->per_node : nodes;
	if (l->ntasks < nodes)
		nodes = l->ntasks;
	for (i = 0; i < nodes; i++)
		l->count[i] = 1;
	left = l->ntasks - nodes;
	for (i = 0; i < nodes && left; i++) {
		long cap = step->per_node ? step->per_node : cpus[i];
		long more = cap - 1 < left ? cap - 1 : left;

		if (more > 0) {
			l->count[i] += more;
			left -= more;
		}
	}
	l->n = nodes;
	return left ? -ERANGE : 0;
}

/* "n1:2,n2:2" */
static char *hosts_arg(const struct layout *l)
{
	size_t size = l->n * (sizeof(l->names[0]) + 24) + 1, off = 0;
	char *s = malloc(size);
	int i;

	if (!s)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < l->n; i++)
		off += snprintf(s + off, size - off, "%s%s:%ld", i ? "," : "", l->names[i],
				l->count[i]);
	return s;
}

/* what srun exports and mpirun does not: all but Slurm's, PMI's and Open MPI's own */
static bool forwarded(const char *var)
{
	static const char *const skip[] = { "SLURM_", "SLURMD_", "PMI_", "PMIX_", "OMPI_",
					    "ENVIRONMENT=", "_=", NULL };
	const char *p;
	int k;

	for (k = 0; skip[k]; k++)
		if (!strncmp(var, skip[k], strlen(skip[k])))
			return false;
	for (p = var; *p && *p != '='; p++)
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (p > var && *p >= '0' && *p <= '9')))
			return false;
	return *p == '=' && p > var;
}

struct argv_buf {
	char *v[SRUN_MAX_ARGS];
	int n;
};

static void push(struct argv_buf *b, const char *a)
{
	if (b->n < SRUN_MAX_ARGS - 1)
		b->v[b->n++] = (char *)a;
	b->v[b->n] = NULL;
}

static int ompi_argv(struct argv_buf *b, const char *mpirun, const char *rsh,
		     const char *hosts, char *np)
{
	char **e, *name;

	push(b, mpirun);
	push(b, "--mca");
	push(b, "plm");
	push(b, "rsh");
	push(b, "--mca");
	push(b, "plm_rsh_agent");
	push(b, rsh);
	push(b, "-np");
	push(b, np);
	push(b, "--host");
	push(b, hosts);
	push(b, "--bind-to");
	push(b, "none");
	for (e = environ; *e; e++) {
		if (!forwarded(*e))
			continue;
		name = strndup(*e, strcspn(*e, "="));
		if (!name)
			return -ENOMEM;
		push(b, "-x");
		push(b, name);
	}
	return 0;
}

static void hydra_argv(struct argv_buf *b, const char *mpiexec, const char *rsh,
		       const char *iface, const char *hosts, char *np)
{
	push(b, mpiexec);
	push(b, "-launcher");
	push(b, "rsh");
	push(b, "-launcher-exec");
	push(b, rsh);
	if (iface && *iface) {
		push(b, "-iface");
		push(b, iface);
	}
	push(b, "-hosts");
	push(b, hosts);
	push(b, "-n");
	push(b, np);
}

static void print_argv(char **v)
{
	int i;

	for (i = 0; v[i]; i++)
		printf("%s%s", i ? " " : "", v[i]);
	printf("\n");
}

/* run the step as srun would have: a Slurm step, left alone by the plugin */
static int as_srun(char **srun, bool dry_run)
{
	if (dry_run) {
		printf("srun: ");
		print_argv(srun);
		return EX_DONE;
	}
	setenv("CRJOB_SRUN", "step", 1);
	execvp(srun[0], srun);
	fprintf(stderr, "crjob srun: %s: %s\n", srun[0], strerror(errno));
	return 127;
}

int cmd_srun(struct cli *cli, int argc, char **argv)
{
	const char *rsh = NULL, *mpirun = NULL, *mpiexec = NULL, *iface = NULL, *dry = NULL;
	struct cli_arg args[] = { { "rsh", true, &rsh }, { "mpirun", true, &mpirun },
				  { "mpiexec", true, &mpiexec }, { "iface", true, &iface },
				  { "dry-run", false, &dry }, { 0 } };
	struct srun_step step = { 0 };
	static struct layout l;
	static char names[SRUN_MAX_NODES][256];
	static struct argv_buf b;
	char **srun, np[32], *hosts;
	enum srun_mpi kind;
	int ret, i;

	srun = cli_command(&argc, argv);
	ret = cli_args(cli, argc, argv, args, false);
	if (ret)
		return ret;
	if (!srun || !srun[0] || !rsh) {
		fprintf(stderr, "crjob srun: give --rsh CRMPI-RSH and -- SRUN [OPTIONS] PROGRAM\n");
		return EX_USAGE;
	}
	parse_srun(srun, &step);
	kind = mpi_kind(step.mpi);
	if (kind == MPI_NONE)
		return as_srun(srun, dry);
	if (step.why) {
		fprintf(stderr, "crjob: srun %s: no equivalent in the MPI launcher: the step runs "
			"as a Slurm step, and the job is not checkpointed while it runs\n",
			step.why);
		return as_srun(srun, dry);
	}
	l.names = names;
	ret = plan(&step, &l);
	if (ret) {
		if (ret != -ERANGE)
			fprintf(stderr, "crjob: srun: the job's nodes are not known (%s): the step "
				"runs as a Slurm step, not checkpointed\n", strerror(-ret));
		return as_srun(srun, dry);
	}
	hosts = hosts_arg(&l);
	if (!hosts)
		return as_srun(srun, dry);
	snprintf(np, sizeof(np), "%ld", l.ntasks);
	if (kind == MPI_OMPI) {
		if (ompi_argv(&b, mpirun ? mpirun : "mpirun.openmpi", rsh, hosts, np))
			return as_srun(srun, dry);
	} else {
		hydra_argv(&b, mpiexec ? mpiexec : "mpiexec.hydra", rsh, iface, hosts, np);
	}
	for (i = 0; step.prog[i]; i++)
		push(&b, step.prog[i]);
	if (dry) {
		print_argv(b.v);
		return EX_DONE;
	}
	execvp(b.v[0], b.v);
	fprintf(stderr, "crjob: srun: %s: %s: the step runs as a Slurm step, not checkpointed\n",
		b.v[0], strerror(errno));
	return as_srun(srun, false);
}
