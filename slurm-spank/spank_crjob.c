/*
 * spank_crjob: the Slurm side of crjob.
 *
 * plugstack.conf:
 *
 *     optional /path/spank_crjob.so store=DIR crjob=PATH coord=PATH [crd=PATH]
 *                                   [agent_port=7710] [iface=eth0] [stop_timeout=20]
 *                                   [munge_socket=PATH] [keep=K] [restore=1]
 *                                   [crmpi=PATH [crmpi_hosts=FILE]]
 *                                   [srun_mpi=0] [mpirun=PATH] [mpiexec=PATH]
 *
 * Options (registered from slurm_spank_init, so sbatch and salloc accept
 * them too, not only srun):
 *
 *     --checkpoint[=INTERVAL]   checkpoint this job: every INTERVAL (30, 30s, 10m,
 *                               2h) or, without one, on demand and before preemption
 *     --checkpoint-dir=DIR      the image store (default: store= of plugstack.conf)
 *     --restart-from=JOBID      start from the last generation of another job of the
 *                               same user (implies --checkpoint: the new job's
 *                               coordinator restores it and checkpoints on demand)
 *
 * An invalid value is refused where the user typed it (sbatch, salloc, srun)
 * with a message that says what is expected.  The values reach every step of
 * the job (Slurm exports them as SLURM_SPANK__SLURM_SPANK_OPTION_crjob_*) and
 * the tasks as CRJOB_CHECKPOINT (seconds, 0 = on demand), CRJOB_STORE and
 * CRJOB_RESTART_FROM.
 *
 * With crmpi=PATH, the steps of a --checkpoint job also get HYDRA_LAUNCHER=rsh,
 * HYDRA_LAUNCHER_EXEC=PATH, OMPI_MCA_plm=rsh and OMPI_MCA_plm_rsh_agent=PATH
 * (and CRMPI_HOSTS=FILE from crmpi_hosts=), each unless the job has it: MPICH's
 * mpiexec.hydra and Open MPI's mpirun then start hydra_pmi_proxy and orted
 * with crmpi-rsh, as trees of the job (see "mpirun inside sbatch" below),
 * and the user's script needs no change.  Opt-in: crmpi-rsh starts them
 * through the node agents (or by nsenter on the namespace nodes of
 * crmpi_hosts=); where neither works, every mpirun of the job would fail.
 *
 * The job must never fail because of this plugin: a missing crjob, crjob-coord
 * or crd, an unreachable coordinator or agent is logged (once, with the job
 * id) and the job runs on without checkpoints.  Every helper is started by
 * fork+exec, detached (own session, double fork: slurmstepd never waits for
 * it and never reaps it), as the job's owner.
 *
 * srun MPI steps (with crmpi=, unless srun_mpi=0): in a --checkpoint batch
 * script, `srun --mpi=pmix|pmi2 ...` (or SLURM_MPI_TYPE) becomes `crjob srun`
 * (crjob/cmd-srun.c), which runs the same ranks on the same nodes with Open
 * MPI's mpirun (mpirun=, default mpirun.openmpi) or MPICH's mpiexec.hydra
 * (mpiexec=) and crmpi-rsh: trees the job's checkpoints hold, where an srun
 * step's tasks hang off slurmstepd.  Other steps, a job with CRJOB_SRUN=step,
 * and options crjob srun cannot translate stay srun steps (below).
 *
 * What runs where (remote = slurmstepd on each node of a step):
 *
 *   init_post_opt, local, in srun inside the batch script of a --checkpoint
 *	job: exec `crjob srun --rsh CRMPI -- SRUN-ARGV` (steer_srun), before
 *	srun has asked Slurm for anything.
 *   init_post_opt, remote, batch step: start the job's coordinator,
 *	crjob-coord --job JOBID --store DIR [--interval S] --owner UID,
 *	on the first node; it writes STORE/coord/JOBID, where crjob finds it.
 *   task_post_fork, remote, batch step: note the task's PID and register
 *	the node: crjob register JOBID --node NODE,IP:AGENT_PORT,IP,PID
 *	(retried while the coordinator is not up yet: exit 3); not when the
 *	task is crjob batch (task_init), which registers the script it runs.  Other steps
 *	(srun): crjob register JOBID --step-begun JOBID.STEP@NODE, and at the
 *	step's exit --step-ended: no checkpoint while one runs (its tasks hang
 *	off slurmstepd and cannot be restored).
 *   task_init, remote, when SLURM_RESTART_COUNT is set (or --restart-from):
 *	look for a committed generation of the job (or else of --restart-from)
 *	in the store; CRJOB_RESTORE_GENERATION=G tells the task what was found;
 *	the batch step execs `crjob resume` (see task_init).
 *   exit, remote, batch step: crjob shutdown JOBID.
 *
 * --restart-from=JOBID restores only the checkpoints of the job's owner: the
 * store's job directories are their owners' (0700).  sbatch/srun/salloc
 * refuse another user's job at submission; that check runs on the user's
 * side (a plugstack.conf of the user's own gets past it), so the job itself
 * refuses it again and starts from the beginning, and crjob resume, the
 * coordinator and the agents check it once more.
 *
 * Restore instead of launch (designed here and in docs/slurm.md; done for
 * one-node batch jobs with restore=1 in plugstack.conf, see task_init):
 *
 *   A requeued job runs its batch script again with the same job id and
 *   SLURM_RESTART_COUNT=N.  task_init finds the last committed generation G.
 *   There, in task_init (inside the forked task, just before exec, as the
 *   owner; its PID is the task's) the plugin execve()s
 *	crd restore --store DIR --job JOBID --generation G --writer NODE-PID
 *	     --pidns --remap-ip OLD=NEW... --keep-net-locked
 *   instead of the application, for the tree the old node i had (new node i
 *   of the allocation takes old node i, as the coordinator's RESTART does).
 *   crd restore stays the parent of the restored root and exits with its
 *   status, so Slurm sees the task it launched run and end as usual, signals
 *   sent to the task reach crd, which forwards them.  --pidns: the restored
 *   PIDs need not be free on the new node.  The restores of all nodes meet
 *   at the coordinator (RESTORE/RESUME), which net-unlocks them together.
 *   Steps that ran inside the batch script (srun, mpirun) are not launched
 *   again: they are part of the restored batch tree, so the batch step is
 *   the only one restored in place; a restored srun client talks to a new
 *   slurmstepd, which is why an srun-launched (PMIx) job is restored as the
 *   batch tree plus the step's trees, see below.
 *
 *   srun steps: an MPI step is steered to crjob srun (above), so none runs
 *   when a checkpoint is taken.  The route not taken: restoring srun-launched
 *   ranks in place would need, for each rank, its PMIx/PMI-2 connection into
 *   slurmstepd replaced by one to a proxy inside the tree that re-attaches to
 *   the new step's server (same namespace slurm.pmix.JOBID.STEP) and answers
 *   from the key-value state it kept, plus an srun client that is a new
 *   step's: far more of Slurm's protocols to carry than the launchers MPI
 *   libraries ship.  For the steps that remain (no MPI, CRJOB_SRUN=step) the
 *   coordinator refuses a checkpoint while one runs (task_post_fork tells
 *   it), and a requeued job resumes from a generation taken between steps,
 *   or starts over.
 *
 *   mpirun inside sbatch: with OMPI_MCA_plm_rsh_agent=crmpi-rsh, orted on
 *   each node is started detached in that node (its network namespace here,
 *   the node agent on a real cluster) in a session of its own, so each node
 *   holds one tree (node 1: batch shell + mpirun, others: orted + ranks)
 *   and every connection between them (orted-mpirun OOB, rank-rank TCP) has
 *   both ends in checkpointed trees: dumped under the network lock and
 *   restored with --remap-ip.  crjob batch registers the batch script
 *   and the agents report the orteds (crjob register from crmpi-rsh).
 *
 *   SIGTERM before preemption and time limit (implemented): Slurm ends a
 *   job with SIGCONT+SIGTERM, SIGKILL KillWait later; proctrack/cgroup sends
 *   anything but SIGKILL to slurmstepd's children (the tasks) only.
 *   Preemption (PreemptMode=REQUEUE) signals the steps' tasks at once and
 *   the batch task only at the end of GraceTime, unless the job has
 *   --signal=B:TERM@T and slurm.conf SlurmctldParameters=
 *   preempt_send_user_signal: then the batch task gets SIGTERM at once.
 *   - Batch step: the task is `crjob batch` (wrap_batch, crjob/cmd-batch.c),
 *     which runs the script as its child, registers the child's tree, and
 *     turns SIGTERM into `crjob checkpoint JOBID --stop`, then into
 *     `scontrol requeue` if the job still runs (a signal ahead of a time
 *     limit or of the end of GraceTime).  The script never gets that
 *     SIGTERM, so its images hold none and the restore delivers none; crjob
 *     batch is in no image (the restored job's task is `crjob resume`).
 *     Blocking SIGTERM in the batch task does not work: dash, the usual
 *     batch shell, clears the signal mask it starts with.
 *   - Other steps (srun): task_init blocks SIGTERM in the task (the mask
 *     survives exec: the signal stays pending) and leaves a watcher behind:
 *     a double-forked process outside the task's tree (never checkpointed)
 *     that polls the task's pending signals.  When SIGTERM is pending, the
 *     watcher of global task 0 runs `crjob checkpoint JOBID --stop` (at
 *     most stop_timeout= seconds), then every watcher SIGKILLs its task if
 *     it is still there.  An application that unblocks SIGTERM (orted)
 *     gets the signal as before.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

SPANK_PLUGIN(crjob, 1);

#define MAX_TASKS	256
#define REGISTER_WAIT	30	/* seconds a registration waits for the coordinator */

/* plugstack.conf arguments */
static char store[PATH_MAX];
static char crjob_bin[PATH_MAX] = "/usr/bin/crjob";
static char coord_bin[PATH_MAX] = "/usr/sbin/crjob-coord";
static char crd_bin[PATH_MAX] = "/usr/sbin/crd";
static char iface[IF_NAMESIZE];
static char munge_socket[PATH_MAX];	/* munged's socket, when not munge's default */
static int agent_port = 7710;		/* RPC_DEFAULT_AGENT_PORT */
static int keep;			/* generations kept per job, 0: all */
static int restore_batch;		/* restore=1: experimental restore of the batch step */
static int stop_timeout = 20;		/* seconds for checkpoint --stop at SIGTERM */
static char crmpi_rsh[PATH_MAX];	/* crmpi=: MPI launchers start daemons with it */
static char crmpi_hosts[PATH_MAX];	/* crmpi_hosts=: its CRMPI_HOSTS */
static int srun_mpi = 1;		/* srun_mpi=0: srun MPI steps stay Slurm steps */
static char mpirun_bin[PATH_MAX];	/* mpirun=: Open MPI's launcher for them */
static char mpiexec_bin[PATH_MAX];	/* mpiexec=: MPICH's */

/* the user's options */
static int opt_checkpoint;
static long opt_interval;		/* seconds, 0: on demand only */
static char opt_dir[PATH_MAX];
static char opt_restart_from[32];

/* this node's part of a step (remote context) */
static pid_t task_pids[MAX_TASKS];
static unsigned int ntasks;

static int opt_cb(int val, const char *optarg, int remote);
static int restart_from_refused(uid_t uid, char *why, size_t len);

enum { OPT_CHECKPOINT = 1, OPT_DIR, OPT_RESTART_FROM };

static struct spank_option options[] = {
	{ "checkpoint", "[INTERVAL]",
	  "Checkpoint the job with crjob, every INTERVAL (30s, 10m, 2h) if given, "
	  "else on demand and before preemption", 2, OPT_CHECKPOINT, opt_cb },
	{ "checkpoint-dir", "DIR", "crjob image store of the job's checkpoints", 1, OPT_DIR,
	  opt_cb },
	{ "restart-from", "JOBID", "Start from the last checkpoint of job JOBID", 1,
	  OPT_RESTART_FROM, opt_cb },
	SPANK_OPTIONS_TABLE_END
};

/* "30", "30s", "10m", "2h", "1d": seconds, or -1 */
static long parse_interval(const char *s)
{
	char *end;
	long v, mul = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || v <= 0)
		return -1;
	if (*end) {
		if (end[1])
			return -1;
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
	}
	if (v > 366L * 86400 / mul)
		return -1;
	return v * mul;
}

/*
 * The value came from the job's environment (a step inside the job), not
 * from the user's command line: it was checked when the job was submitted.
 */
static int from_env(const char *name, const char *optarg)
{
	char var[128];
	const char *v;

	snprintf(var, sizeof(var), "SLURM_SPANK__SLURM_SPANK_OPTION_crjob_%s", name);
	v = getenv(var);
	return v && optarg && !strcmp(v, optarg);
}

/*
 * Another user's --restart-from is refused where the user typed it (or
 * exported it to a step: the same user's refusal); in slurmstepd it is not
 * refused but not restored either (task_init).
 */
static int check_restart_from(int remote)
{
	char why[512];

	if (!opt_restart_from[0] || remote)
		return 0;
	if (!restart_from_refused(getuid(), why, sizeof(why)))
		return 0;
	slurm_error("crjob: --restart-from=%s: %s", opt_restart_from, why);
	return -1;
}

static int opt_cb(int val, const char *optarg, int remote)
{
	const char *p;

	/* Slurm exports an option given without a value as "(null)" */
	if (optarg && !strcmp(optarg, "(null)"))
		optarg = NULL;
	switch (val) {
	case OPT_CHECKPOINT:
		opt_checkpoint = 1;
		opt_interval = 0;
		if (optarg && *optarg) {
			opt_interval = parse_interval(optarg);
			if (opt_interval < 0) {
				slurm_error("crjob: --checkpoint=%s: not an interval: expected a "
					    "positive number of seconds with an optional unit "
					    "s, m, h or d (30, 30s, 10m, 2h)", optarg);
				/* never fail a running job: only refuse the user's typo */
				if (remote || from_env("checkpoint", optarg)) {
					opt_checkpoint = 0;
					return 0;
				}
				return -1;
			}
		}
		return 0;
	case OPT_DIR:
		if (!optarg || optarg[0] != '/' || strlen(optarg) >= sizeof(opt_dir)) {
			slurm_error("crjob: --checkpoint-dir=%s: expected an absolute path",
				    optarg ? optarg : "");
			return -1;
		}
		snprintf(opt_dir, sizeof(opt_dir), "%s", optarg);
		/* --restart-from came first: check it again in this store */
		return check_restart_from(remote);
	case OPT_RESTART_FROM:
		for (p = optarg; p && *p && isdigit((unsigned char)*p); p++)
			;
		if (!optarg || !*optarg || *p || strlen(optarg) >= sizeof(opt_restart_from)) {
			slurm_error("crjob: --restart-from=%s: expected a job id",
				    optarg ? optarg : "");
			return -1;
		}
		snprintf(opt_restart_from, sizeof(opt_restart_from), "%s", optarg);
		/* the new job's coordinator restores it: a checkpointed job */
		opt_checkpoint = 1;
		return check_restart_from(remote);
	}
	return -1;
}

static void parse_args(int ac, char **av)
{
	int i;

	for (i = 0; i < ac; i++) {
		const char *a = av[i];

		if (!strncmp(a, "store=", 6))
			snprintf(store, sizeof(store), "%s", a + 6);
		else if (!strncmp(a, "crjob=", 6))
			snprintf(crjob_bin, sizeof(crjob_bin), "%s", a + 6);
		else if (!strncmp(a, "coord=", 6))
			snprintf(coord_bin, sizeof(coord_bin), "%s", a + 6);
		else if (!strncmp(a, "crd=", 4))
			snprintf(crd_bin, sizeof(crd_bin), "%s", a + 4);
		else if (!strncmp(a, "munge_socket=", 13))
			snprintf(munge_socket, sizeof(munge_socket), "%s", a + 13);
		else if (!strncmp(a, "iface=", 6))
			snprintf(iface, sizeof(iface), "%s", a + 6);
		else if (!strncmp(a, "keep=", 5))
			keep = atoi(a + 5);
		else if (!strncmp(a, "agent_port=", 11))
			agent_port = atoi(a + 11);
		else if (!strncmp(a, "restore=", 8))
			restore_batch = atoi(a + 8) > 0;
		else if (!strncmp(a, "stop_timeout=", 13))
			stop_timeout = atoi(a + 13);
		else if (!strncmp(a, "crmpi=", 6))
			snprintf(crmpi_rsh, sizeof(crmpi_rsh), "%s", a + 6);
		else if (!strncmp(a, "crmpi_hosts=", 12))
			snprintf(crmpi_hosts, sizeof(crmpi_hosts), "%s", a + 12);
		else if (!strncmp(a, "srun_mpi=", 9))
			srun_mpi = atoi(a + 9) > 0;
		else if (!strncmp(a, "mpirun=", 7))
			snprintf(mpirun_bin, sizeof(mpirun_bin), "%s", a + 7);
		else if (!strncmp(a, "mpiexec=", 8))
			snprintf(mpiexec_bin, sizeof(mpiexec_bin), "%s", a + 8);
		else
			/* a typo in plugstack.conf must not stop jobs */
			slurm_error("crjob: plugstack.conf: unknown argument '%s' ignored", a);
	}
}

static const char *job_store(void)
{
	return opt_dir[0] ? opt_dir : store;
}

/*
 * --restart-from names a job whose checkpoints are not uid's: its directory
 * in the store belongs to someone else (root may restart anyone's).  A job
 * without a directory has nothing to restore and is not refused here.
 */
static int restart_from_refused(uid_t uid, char *why, size_t len)
{
	char path[PATH_MAX + 64];
	struct stat sb;

	if (!job_store()[0] || uid == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/jobs/%s", job_store(), opt_restart_from);
	if (lstat(path, &sb))
		return 0;
	if (S_ISDIR(sb.st_mode) && sb.st_uid == uid)
		return 0;
	snprintf(why, len, "the checkpoints of job %s belong to uid %u, not to you (uid %u): "
		 "refused", opt_restart_from, (unsigned int)sb.st_uid, (unsigned int)uid);
	return 1;
}

/*
 * argv of `crjob --store S [--munge-socket M] ARGS...` (ARGS end with NULL)
 * in argv[max]
 */
static char **crjob_argv(char **argv, int max, ...)
{
	va_list ap;
	int n = 0;
	char *a;

	argv[n++] = crjob_bin;
	argv[n++] = "--store";
	argv[n++] = (char *)job_store();
	if (munge_socket[0]) {
		argv[n++] = "--munge-socket";
		argv[n++] = munge_socket;
	}
	va_start(ap, max);
	while ((a = va_arg(ap, char *)) && n < max - 1)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return argv;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	struct spank_option *o;

	parse_args(ac, av);
	if (spank_context() == S_CTX_SLURMD || spank_context() == S_CTX_JOB_SCRIPT)
		return 0;
	for (o = options; o->name; o++) {
		if (spank_option_register(sp, o) != ESPANK_SUCCESS) {
			/* without its options the job runs as if they were not given */
			slurm_error("crjob: cannot register --%s", o->name);
		}
	}
	return 0;
}

static int item_u32(spank_t sp, spank_item_t item, uint32_t *v)
{
	return spank_get_item(sp, item, v) == ESPANK_SUCCESS ? 0 : -1;
}

static int step_ids(spank_t sp, uint32_t *job, uint32_t *step)
{
	if (item_u32(sp, S_JOB_ID, job) || item_u32(sp, S_JOB_STEPID, step))
		return -1;
	return 0;
}

static const char *step_name(uint32_t step, char *buf, size_t len)
{
	if (step == SLURM_BATCH_SCRIPT)
		return "batch";
	if (step == SLURM_EXTERN_CONT)
		return "extern";
	snprintf(buf, len, "%u", step);
	return buf;
}

/* this node's address: on iface= if given, else the first up, non-loopback IPv4 */
static int node_ip(char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;
	int ret = -1;

	if (getifaddrs(&ifa))
		return -1;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
			continue;
		if (iface[0] && strcmp(iface, i->ifa_name))
			continue;
		if (inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf, len))
			ret = 0;
		break;
	}
	freeifaddrs(ifa);
	return ret;
}

static void node_name(char *buf, size_t len)
{
	const char *n = getenv("SLURMD_NODENAME");

	if (n && *n)
		snprintf(buf, len, "%s", n);
	else if (gethostname(buf, len))
		snprintf(buf, len, "unknown");
}

/*
 * Run argv as uid/gid, detached: double fork, own session, stdio on
 * /dev/null, never waited for by slurmstepd.  When retry_exit3, the helper
 * runs argv again (once a second, up to REGISTER_WAIT s) while it exits 3
 * (coordinator not found yet).  Returns 0 if the helper was started.
 */
static int run_detached(char *const argv[], uid_t uid, gid_t gid, int retry_exit3)
{
	pid_t pid, w;
	int st;

	if (access(argv[0], X_OK)) {
		slurm_info("crjob: %s: %s; the job runs without it", argv[0], strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		slurm_error("crjob: fork for %s: %s", argv[0], strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd, i;
		sigset_t none;

		setsid();
		if (fork())
			_exit(0);
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		for (i = 3; i < 1024; i++)
			close(i);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (munge_socket[0])
			setenv("CRJOB_MUNGE_SOCKET", munge_socket, 1);
		for (i = 0; i < NSIG; i++)
			signal(i, SIG_DFL);
		if (getuid() == 0 && uid != 0 &&
		    (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)))
			_exit(126);
		for (i = 0; i < REGISTER_WAIT; i++) {
			pid_t c = fork();

			if (c == 0) {
				execv(argv[0], argv);
				_exit(127);
			}
			if (c < 0)
				_exit(1);
			while (waitpid(c, &st, 0) < 0 && errno == EINTR)
				;
			if (!retry_exit3 || !WIFEXITED(st) || WEXITSTATUS(st) != 3)
				_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
			sleep(1);
		}
		_exit(3);
	}
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	return 0;
}

static int owner(spank_t sp, uid_t *uid, gid_t *gid)
{
	if (spank_get_item(sp, S_JOB_UID, uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, gid) != ESPANK_SUCCESS)
		return -1;
	return 0;
}

/* srun's own command line, as argv in buf (NULL-terminated), or NULL */
static char **self_argv(char *buf, size_t size, char **argv, int max)
{
	ssize_t len = 0, r;
	int fd, n = 0;
	char *p;

	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	while ((r = read(fd, buf + len, size - 1 - len)) > 0)
		len += r;
	close(fd);
	if (r < 0 || len <= 0 || (size_t)len == size - 1)
		return NULL;
	buf[len] = '\0';
	for (p = buf; p < buf + len && n < max - 1; p += strlen(p) + 1)
		argv[n++] = p;
	argv[n] = NULL;
	return p < buf + len ? NULL : argv;
}

/*
 * Local, in srun, inside the batch script of a --checkpoint job: hand the
 * step to `crjob srun` (crjob/cmd-srun.c), which runs an MPI step (--mpi=pmix,
 * pmi2) with mpirun or mpiexec.hydra and crmpi-rsh, as trees the job's
 * checkpoints hold, and any other step as the srun it is (CRJOB_SRUN=step).
 * Here srun has not asked Slurm for anything yet: exec leaves no step behind.
 */
static void steer_srun(void)
{
	static char cmdline[256 * 1024];
	static char *sargv[8192], *argv[8192 + 16];
	const char *e = getenv("ENVIRONMENT"), *s = getenv("CRJOB_SRUN");
	int n = 0, i;

	if (!srun_mpi || !crmpi_rsh[0] || !getenv("CRJOB_JOB") || !e || strcmp(e, "BATCH") ||
	    getenv("SLURM_STEP_ID") || (s && !strcmp(s, "step")))
		return;
	if (access(crjob_bin, X_OK) || !self_argv(cmdline, sizeof(cmdline), sargv, 8192))
		return;
	argv[n++] = crjob_bin;
	argv[n++] = "srun";
	argv[n++] = "--rsh";
	argv[n++] = crmpi_rsh;
	if (iface[0]) {
		argv[n++] = "--iface";
		argv[n++] = iface;
	}
	if (mpirun_bin[0]) {
		argv[n++] = "--mpirun";
		argv[n++] = mpirun_bin;
	}
	if (mpiexec_bin[0]) {
		argv[n++] = "--mpiexec";
		argv[n++] = mpiexec_bin;
	}
	argv[n++] = "--";
	for (i = 0; sargv[i]; i++)
		argv[n++] = sargv[i];
	argv[n] = NULL;
	{
		sigset_t none;

		/* nothing of srun's goes into the launcher's tree, which crjob dumps */
		syscall(SYS_close_range, 3, ~0U, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	execv(argv[0], argv);
	slurm_error("crjob: %s srun: %s: the step runs as a Slurm step", crjob_bin,
		    strerror(errno));
}

/*
 * crjob checkpoints the trees of a batch job: salloc's shell is on a login
 * node, and the tasks of an srun outside a batch job hang off slurmstepd.
 * Said where the user typed --checkpoint; the job runs, without checkpoints.
 */
static void warn_interactive(void)
{
	char comm[32] = "";
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, comm, sizeof(comm) - 1) < 0)
			comm[0] = '\0';
		close(fd);
		comm[strcspn(comm, "\n")] = '\0';
	}
	if (spank_context() == S_CTX_ALLOCATOR && !strcmp(comm, "salloc"))
		slurm_error("crjob: --checkpoint: an salloc allocation has no batch script "
			    "whose processes crjob could restore: no checkpoints (submit the "
			    "job with sbatch --checkpoint)");
	else if (spank_context() == S_CTX_LOCAL && !getenv("SLURM_JOB_ID"))
		slurm_error("crjob: --checkpoint: the tasks of an srun outside a batch job "
			    "cannot be restored: no checkpoints (submit the job with sbatch "
			    "--checkpoint)");
}

/*
 * Remote: export the options to the tasks, start the coordinator from the
 * batch step.  Local (srun): steer an MPI step to a launch crjob restores.
 */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	uint32_t job, step;
	char buf[32], jobs[16], uids[16], ivs[32], listen[64], ip[INET_ADDRSTRLEN];
	uid_t uid;
	gid_t gid;

	if (!opt_checkpoint)
		return 0;
	if (!spank_remote(sp)) {
		warn_interactive();
		if (spank_context() == S_CTX_LOCAL)
			steer_srun();
		return 0;
	}
	if (step_ids(sp, &job, &step) || step == SLURM_EXTERN_CONT)
		return 0;
	snprintf(buf, sizeof(buf), "%ld", opt_interval);
	spank_setenv(sp, "CRJOB_CHECKPOINT", buf, 1);
	/* what crmpi-rsh needs to register the MPI daemons it starts */
	snprintf(jobs, sizeof(jobs), "%u", job);
	spank_setenv(sp, "CRJOB_JOB", jobs, 1);
	snprintf(buf, sizeof(buf), "%d", agent_port);
	spank_setenv(sp, "CRJOB_AGENT_PORT", buf, 1);
	spank_setenv(sp, "CRJOB", crjob_bin, 1);
	if (munge_socket[0])
		spank_setenv(sp, "CRJOB_MUNGE_SOCKET", munge_socket, 1);
	if (job_store()[0])
		spank_setenv(sp, "CRJOB_STORE", job_store(), 1);
	if (opt_restart_from[0])
		spank_setenv(sp, "CRJOB_RESTART_FROM", opt_restart_from, 1);
	if (crmpi_rsh[0]) {
		/*
		 * mpirun and mpiexec.hydra would start their daemons with srun, as
		 * steps that cannot be restored: with crmpi-rsh each node's daemon
		 * is a tree of the job (see the top).  The user's own choice wins.
		 */
		spank_setenv(sp, "HYDRA_LAUNCHER", "rsh", 0);
		spank_setenv(sp, "HYDRA_LAUNCHER_EXEC", crmpi_rsh, 0);
		spank_setenv(sp, "OMPI_MCA_plm", "rsh", 0);
		spank_setenv(sp, "OMPI_MCA_plm_rsh_agent", crmpi_rsh, 0);
		if (crmpi_hosts[0])
			spank_setenv(sp, "CRMPI_HOSTS", crmpi_hosts, 0);
	}
	if (step != SLURM_BATCH_SCRIPT)
		return 0;
	if (!job_store()[0]) {
		slurm_error("crjob: job %u: no store (store= in plugstack.conf or "
			    "--checkpoint-dir): no checkpoints", job);
		return 0;
	}
	if (owner(sp, &uid, &gid))
		return 0;
	snprintf(uids, sizeof(uids), "%u", (unsigned int)uid);
	snprintf(ivs, sizeof(ivs), "%ld", opt_interval);
	/* on this node's address: crjob and the agents find it by that, not by name */
	if (node_ip(ip, sizeof(ip)))
		return 0;
	snprintf(listen, sizeof(listen), "%s:0", ip);
	{
		char keeps[16];
		char *argv[16] = { coord_bin, "--job", jobs, "--store", (char *)job_store(),
				   "--listen", listen, "--owner", uids, "--keep", keeps };
		int n = 11;

		snprintf(keeps, sizeof(keeps), "%d", keep);
		if (munge_socket[0]) {
			argv[n++] = "--munge-socket";
			argv[n++] = munge_socket;
		}
		if (opt_interval) {
			argv[n++] = "--interval";
			argv[n++] = ivs;
		}
		argv[n] = NULL;

		if (!run_detached(argv, uid, gid, 0))
			slurm_info("crjob: job %u: coordinator started (interval %lds)", job,
				   opt_interval);
	}
	return 0;
}

/* Remote, in slurmstepd: the task's real PID. */
static const char *jobs_of(uint32_t job, char *buf)
{
	sprintf(buf, "%u", job);
	return buf;
}

static long restore_source(uint32_t job, int requeued, uid_t uid, char *jobs, size_t len,
			   const char **from, int log);

/*
 * An srun step began or ended on this node: its tasks hang off slurmstepd and
 * cannot be restored, so the coordinator takes no checkpoint while it runs
 * (coord/steps.c), and its tasks are not registered as the node's trees (that
 * would replace the batch tree).
 */
static void step_note(spank_t sp, uint32_t job, uint32_t step, const char *node,
		      const char *what)
{
	char jobs[16], id[128], *argv[12];
	uid_t uid;
	gid_t gid;

	if (!job_store()[0] || owner(sp, &uid, &gid))
		return;
	snprintf(jobs, sizeof(jobs), "%u", job);
	snprintf(id, sizeof(id), "%u.%u@%s", job, step, node);
	run_detached(crjob_argv(argv, 12, "register", jobs, what, id, NULL), uid, gid, 1);
}

/* the batch step's task is `crjob batch` (see task_init) */
static int wraps_batch(void)
{
	return job_store()[0] && !access(crjob_bin, X_OK);
}

int slurm_spank_task_post_fork(spank_t sp, int ac, char **av)
{
	uint32_t job, step, nlocal, restarts = 0;
	pid_t pid;
	char name[64], ip[64], spec[64 + 64 + 64 + MAX_TASKS * 12], jobs[16], sbuf[16];
	const char *from;
	unsigned int i;
	size_t off;
	uid_t uid;
	gid_t gid;

	if (!opt_checkpoint || step_ids(sp, &job, &step) || step == SLURM_EXTERN_CONT)
		return 0;
	if (spank_get_item(sp, S_TASK_PID, &pid) != ESPANK_SUCCESS ||
	    item_u32(sp, S_JOB_LOCAL_TASK_COUNT, &nlocal))
		return 0;
	if (ntasks < MAX_TASKS)
		task_pids[ntasks++] = pid;
	if (ntasks != nlocal && ntasks != MAX_TASKS)
		return 0;
	/*
	 * A batch step with a generation to restore (requeued, --restart-from)
	 * runs `crjob resume` (task_init): its trees are the restored ones,
	 * which the coordinator learns from the restart.
	 */
	if (step == SLURM_BATCH_SCRIPT && !owner(sp, &uid, &gid)) {
		if (spank_get_item(sp, S_SLURM_RESTART_COUNT, &restarts) != ESPANK_SUCCESS)
			restarts = 0;
		if (restore_source(job, restarts > 0, uid, jobs, sizeof(jobs), &from, 0) >= 0)
			return 0;
	}

	node_name(name, sizeof(name));
	if (step != SLURM_BATCH_SCRIPT) {
		for (i = 0, off = 0; i < ntasks && off < sizeof(spec); i++)
			off += snprintf(spec + off, sizeof(spec) - off, "%s%d", i ? "+" : "",
					(int)task_pids[i]);
		slurm_info("crjob: job %u step %s node %s tasks %s (srun step: no checkpoint "
			   "while it runs)", job, step_name(step, sbuf, sizeof(sbuf)), name, spec);
		step_note(sp, job, step, name, "--step-begun");
		return 0;
	}
	if (node_ip(ip, sizeof(ip))) {
		slurm_error("crjob: job %u: no address for node %s: not registered", job, name);
		return 0;
	}
	off = snprintf(spec, sizeof(spec), "%s,%s:%d,%s,", name, ip, agent_port, ip);
	for (i = 0; i < ntasks && off < sizeof(spec); i++)
		off += snprintf(spec + off, sizeof(spec) - off, "%s%d", i ? "+" : "",
				(int)task_pids[i]);
	slurm_info("crjob: job %u step %s node %s tasks %s", job, step_name(step, sbuf, sizeof(sbuf)),
		   name, strrchr(spec, ',') + 1);
	if (!job_store()[0] || owner(sp, &uid, &gid))
		return 0;	/* no store, no coordinator (said in init_post_opt) */
	/* this task is `crjob batch`: it registers the script it runs, not itself */
	if (wraps_batch())
		return 0;
	snprintf(jobs, sizeof(jobs), "%u", job);
	{
		char *argv[12];

		run_detached(crjob_argv(argv, 12, "register", jobs, "--node", spec, NULL), uid, gid, 1);
	}
	return 0;
}

/*
 * The last committed generation of job in the store, or -1.  Asks
 * `crd store ls JOB` (it parses the manifests); without crd, a committed
 * generation is a gen-G directory with a MANIFEST (docs/store.md).
 */
static long last_generation(const char *dir, const char *job)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat sb;
	long best = -1, g;
	DIR *d;
	char *end;

	if (!access(crd_bin, X_OK)) {
		char cmd[3 * PATH_MAX];
		char line[512];
		FILE *f;

		snprintf(cmd, sizeof(cmd), "'%s' store ls '%s' --store '%s' 2>/dev/null", crd_bin,
			 job, dir);
		f = popen(cmd, "r");
		if (f) {
			while (fgets(line, sizeof(line), f)) {
				char j[64];

				if (sscanf(line, "%63s %ld", j, &g) == 2 && !strcmp(j, job) &&
				    g > best)
					best = g;
			}
			pclose(f);
			return best;
		}
	}
	snprintf(path, sizeof(path), "%s/jobs/%s", dir, job);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "gen-", 4))
			continue;
		g = strtol(de->d_name + 4, &end, 10);
		if (*end)
			continue;	/* gen-G.partial: not committed */
		snprintf(path, sizeof(path), "%s/jobs/%s/%s/MANIFEST", dir, job, de->d_name);
		if (!stat(path, &sb) && g > best)
			best = g;
	}
	closedir(d);
	return best;
}

/*
 * What a restarting job restores: its own last generation when it was
 * requeued, else the last one of --restart-from, if that job is uid's.
 * Returns the generation or -1; *from is the job whose it is (jobs holds
 * this job's id).  log: say why another user's job is not restored.
 */
static long restore_source(uint32_t job, int requeued, uid_t uid, char *jobs, size_t len,
			   const char **from, int log)
{
	char why[512];
	long gen = -1;

	jobs_of(job, jobs);
	*from = jobs;
	if (!job_store()[0])
		return -1;
	if (requeued)
		gen = last_generation(job_store(), jobs);
	if (gen >= 0 || !opt_restart_from[0])
		return gen;
	*from = opt_restart_from;
	if (restart_from_refused(uid, why, sizeof(why))) {
		/* checked at submission: only a submission past our sbatch gets here */
		if (log)
			slurm_error("crjob: job %u: --restart-from=%s: %s", job, opt_restart_from,
				    why);
		return -1;
	}
	return last_generation(job_store(), opt_restart_from);
}

/*
 * Run argv and wait for it at most timeout seconds (then SIGKILL it); its
 * exit code, 128+signal, or -1.
 */
static int run_bounded(char *const argv[], int timeout)
{
	time_t end = time(NULL) + timeout;
	pid_t pid;
	int st;

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (munge_socket[0])
			setenv("CRJOB_MUNGE_SOCKET", munge_socket, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w < 0 && errno != EINTR)
			return -1;
		if (time(NULL) >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(50000);
	}
}

/* SIGTERM is pending for pid (blocked there, so it waits) */
static int sigterm_pending(pid_t pid)
{
	char path[64], line[256];
	unsigned long long mask;
	int ret = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if ((!strncmp(line, "ShdPnd:", 7) || !strncmp(line, "SigPnd:", 7)) &&
		    sscanf(line + 7, "%llx", &mask) == 1 && (mask & (1ULL << (SIGTERM - 1))))
			ret = 1;
	}
	fclose(f);
	return ret;
}

/*
 * The watcher of one task (see "SIGTERM before preemption" at the top): a
 * process outside the task's tree (double fork), so never checkpointed.
 * Slurm sends SIGTERM only to the step's tasks (proctrack/cgroup skips
 * every other process but for SIGKILL), and the task holds it blocked
 * (the mask survives exec): the watcher sees it pending.  Then the watcher
 * of global task 0 asks for `crjob checkpoint JOBID --stop`, and every
 * watcher makes sure its task goes (SIGKILL: its SIGTERM stays blocked), as
 * it would have without us.  A watcher leaves when its task ends.
 */
static void watch_task(pid_t task, uint32_t job, uint32_t step, uint32_t gtask)
{
	char jobs[16], sbuf[16];
	struct pollfd pfd;
	sigset_t set;
	int pidfd, rc;

	pidfd = syscall(SYS_pidfd_open, task, 0);
	if (pidfd < 0) {
		slurm_error("crjob: job %u task %u: no watcher (pidfd_open: %s): SIGTERM is "
			    "not caught", job, gtask, strerror(errno));
		kill(task, SIGKILL);	/* it blocks SIGTERM: do not leave it unkillable */
		_exit(1);
	}
	/* with proctrack/pgid or linuxproc it may reach us too: we act on the task's */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pfd.fd = pidfd;
	pfd.events = POLLIN;
	for (;;) {
		int n = poll(&pfd, 1, 100);

		if (n < 0 && errno != EINTR)
			break;
		if (n > 0)
			_exit(0);	/* the task ended */
		if (sigterm_pending(task))
			break;
	}
	snprintf(jobs, sizeof(jobs), "%u", job);
	if (gtask == 0) {
		char *argv[12];

		crjob_argv(argv, 12, "checkpoint", jobs, "--stop", NULL);

		slurm_info("crjob: job %u step %s: SIGTERM: checkpoint --stop before the job goes",
			   job, step_name(step, sbuf, sizeof(sbuf)));
		rc = run_bounded(argv, stop_timeout);
		if (rc)
			slurm_error("crjob: job %u: checkpoint before termination failed (%d): the "
				    "job goes without it", job, rc);
	} else {
		/* the coordinator's --stop ends this task too when it succeeds */
		poll(&pfd, 1, stop_timeout * 1000);
	}
	syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	_exit(0);
}

/* In the task, before exec: leave a watcher behind and block SIGTERM. */
static void start_watcher(spank_t sp, uint32_t job, uint32_t step)
{
	uint32_t gtask = 0;
	pid_t task = getpid(), pid;
	sigset_t set;
	int st, fd;

	if (access(crjob_bin, X_OK))
		return;		/* nobody to checkpoint: SIGTERM works as without us */
	item_u32(sp, S_TASK_GLOBAL_ID, &gtask);
	pid = fork();
	if (pid < 0) {
		slurm_error("crjob: job %u task %u: fork for the watcher: %s", job, gtask,
			    strerror(errno));
		return;
	}
	if (pid == 0) {
		struct stat sb;

		if (fork())
			_exit(0);
		/*
		 * proctrack/cgroup signals every process of the step but those
		 * whose name is slurmstepd, which a fork of it still has
		 */
		prctl(PR_SET_NAME, "crjob-watch", 0, 0, 0);
		/*
		 * not the task's stdio (srun sees the task's output end with the
		 * task), nor the pipes and sockets between slurmstepd and the
		 * step's tasks; regular files (the step's log) stay
		 */
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		for (fd = 3; fd < 1024; fd++)
			if (!fstat(fd, &sb) && !S_ISREG(sb.st_mode))
				close(fd);
		watch_task(task, job, step, gtask);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/* NAME,AGENT_IP:PORT,IP of this node for crjob batch; -1 (logged) without an address */
static int batch_node(uint32_t job, char *spec, size_t len)
{
	char name[64], ip[INET_ADDRSTRLEN];

	node_name(name, sizeof(name));
	if (node_ip(ip, sizeof(ip))) {
		slurm_error("crjob: job %u: no address for node %s: the batch script runs "
			    "without a checkpoint at SIGTERM", job, name);
		return -1;
	}
	snprintf(spec, len, "%s,%s:%d,%s", name, ip, agent_port, ip);
	return 0;
}

/*
 * The batch step's task becomes `crjob batch JOBID --node SPEC -- SCRIPT...`
 * (crjob/cmd-batch.c): Slurm's SIGTERM to the batch task then reaches a
 * process the script cannot unblock it in (dash clears the signal mask), and
 * becomes a checkpoint --stop and a requeue; the script runs as its child,
 * registered as this node's tree, never signalled.  Any failure here runs
 * the script as without crjob.  Returns 0.
 */
static int wrap_batch(spank_t sp, uint32_t job, uint32_t step)
{
	char spec[160], jobs[16], tmo[16];
	char *argv[16 + 64] = { 0 };
	char **envp = NULL, **jargv = NULL;
	int jargc = 0, i, n;

	if (step != SLURM_BATCH_SCRIPT || !wraps_batch() || batch_node(job, spec, sizeof(spec)))
		return 0;
	snprintf(jobs, sizeof(jobs), "%u", job);
	snprintf(tmo, sizeof(tmo), "%d", stop_timeout);
	crjob_argv(argv, 16, "batch", jobs, "--node", spec, "--stop-timeout", tmo, "--", NULL);
	for (n = 0; argv[n]; n++)
		;
	if (spank_get_item(sp, S_JOB_ARGV, &jargc, &jargv) != ESPANK_SUCCESS || jargc < 1)
		return 0;
	for (i = 0; i < jargc && n < (int)(sizeof(argv) / sizeof(argv[0])) - 1; i++)
		argv[n++] = jargv[i];
	argv[n] = NULL;
	if (spank_get_item(sp, S_JOB_ENV, &envp) != ESPANK_SUCCESS || !envp)
		envp = environ;
	execve(crjob_bin, argv, envp);
	slurm_error("crjob: job %u: exec %s: %s: the batch script runs without a checkpoint "
		    "at SIGTERM", job, crjob_bin, strerror(errno));
	return 0;
}

/*
 * Remote, in the task just before exec, as the job's owner: is this a
 * restart with a checkpoint to restore?  SLURM_RESTART_COUNT is in the
 * task's environment only from here on (user_init does not see it for the
 * batch step).  This is where restore-instead-of-launch goes (see the top).
 */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	char restarts[16], jobs[32], sbuf[16], g[32];
	uint32_t job, step, task = 0;
	const char *from;
	int requeued;
	long gen;
	uid_t uid;
	gid_t gid;

	if (!opt_checkpoint || step_ids(sp, &job, &step) || step == SLURM_EXTERN_CONT)
		return 0;
	/*
	 * Preemption signals the steps' tasks at once; the batch task is
	 * `crjob batch`, which takes its SIGTERM itself (wrap_batch).
	 */
	if (step != SLURM_BATCH_SCRIPT)
		start_watcher(sp, job, step);
	requeued = spank_getenv(sp, "SLURM_RESTART_COUNT", restarts, sizeof(restarts)) ==
		   ESPANK_SUCCESS;
	if (!requeued && !opt_restart_from[0])
		return wrap_batch(sp, job, step);
	item_u32(sp, S_TASK_GLOBAL_ID, &task);
	if (owner(sp, &uid, &gid))
		uid = getuid();		/* the task runs as the owner */
	gen = restore_source(job, requeued, uid, jobs, sizeof(jobs), &from,
			     step == SLURM_BATCH_SCRIPT && task == 0);
	if (gen < 0) {
		slurm_info("crjob: job %u step %s task %u: no committed generation of job %s in "
			   "%s: starting from the beginning", job, step_name(step, sbuf, sizeof(sbuf)),
			   task, from, job_store());
		return wrap_batch(sp, job, step);
	}
	snprintf(g, sizeof(g), "%ld", gen);
	spank_setenv(sp, "CRJOB_RESTORE_GENERATION", g, 1);
	if (step != SLURM_BATCH_SCRIPT) {
		/* steps run inside the batch script come back with it */
		slurm_info("crjob: job %u step %s task %u: generation %ld of job %s: only the "
			   "batch step is restored; this one starts from the beginning", job,
			   step_name(step, sbuf, sizeof(sbuf)), task, gen, from);
		return wrap_batch(sp, job, step);
	}
	if (restore_batch && step == SLURM_BATCH_SCRIPT && !access(crd_bin, X_OK)) {
		/*
		 * Experimental (restore=1): the batch script's tree of a one-node
		 * job comes back in place of the script.  crd restore keeps the
		 * task's PID, stays the parent of the restored tree (in a PID
		 * namespace of its own: the old PIDs need not be free) and exits
		 * with its status.  No way back once exec'ed: a failed restore
		 * fails the job, hence opt-in.
		 */
		char *argv[] = { crd_bin, "restore", "--store", (char *)job_store(), "--job",
				 (char *)from, "--generation", g, "--pidns", NULL };
		char **envp = NULL;

		spank_get_item(sp, S_JOB_ENV, &envp);
		slurm_info("crjob: job %u: restoring the batch step from generation %ld of job %s",
			   job, gen, from);
		execve(crd_bin, argv, envp ? envp : environ);
		slurm_error("crjob: job %u: exec %s: %s: starting from the beginning", job, crd_bin,
			    strerror(errno));
	}
	slurm_info("crjob: job %u: restoring generation %ld of job %s on this allocation instead "
		   "of running the batch script", job, gen, from);
	{
		char spec[160];
		char *head[] = { crjob_bin, "--store", (char *)job_store(), "resume", jobs,
				 "--generation", g, "--node", spec };
		char *argv[sizeof(head) / sizeof(head[0]) + 3 + 64] = { 0 };
		char **envp = NULL, **jargv = NULL;
		int jargc = 0, i, n = 0;

		/* --node: a job that cannot be restored runs its script under crjob batch */
		for (i = 0; i < (int)(sizeof(head) / sizeof(head[0])); i++) {
			if (!strcmp(head[i], "--node") && batch_node(job, spec, sizeof(spec)))
				i++;
			else
				argv[n++] = head[i];
		}
		if (strcmp(from, jobs)) {
			argv[n++] = "--from";
			argv[n++] = (char *)from;
		}
		/* the batch script after --: it runs if the job cannot be restored */
		argv[n++] = "--";
		if (spank_get_item(sp, S_JOB_ARGV, &jargc, &jargv) == ESPANK_SUCCESS)
			for (i = 0; i < jargc && n < (int)(sizeof(argv) / sizeof(argv[0])) - 1; i++)
				argv[n++] = jargv[i];

		/* the job's environment, as the batch script would have had it */
		if (spank_get_item(sp, S_JOB_ENV, &envp) != ESPANK_SUCCESS || !envp)
			envp = environ;
		execve(crjob_bin, argv, envp);
		slurm_error("crjob: job %u: exec %s: %s: running the batch script instead", job,
			    crjob_bin, strerror(errno));
	}
	return 0;
}

/* Remote: the batch step ends with the job: its coordinator goes with it. */
int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	uint32_t job, step;
	char jobs[16];
	uid_t uid;
	gid_t gid;

	if (!spank_remote(sp) || !opt_checkpoint || !job_store()[0] || step_ids(sp, &job, &step) ||
	    step == SLURM_EXTERN_CONT || owner(sp, &uid, &gid))
		return 0;
	if (step != SLURM_BATCH_SCRIPT) {
		char name[64];

		node_name(name, sizeof(name));
		step_note(sp, job, step, name, "--step-ended");
		return 0;
	}
	snprintf(jobs, sizeof(jobs), "%u", job);
	{
		char *argv[12];

		run_detached(crjob_argv(argv, 12, "shutdown", jobs, NULL), uid, gid, 0);
	}
	return 0;
}
