/*
 * crjob batch JOBID --node NAME,AGENT_HOST:PORT,IP [--stop-timeout S] -- SCRIPT ARGS...
 *
 * The batch step's task of a --checkpoint Slurm job: the SPANK plugin execs
 * it in place of the batch script (task_init), so this process is what Slurm
 * started and signals.  It runs the script as its only child, in a session
 * of its own, and registers that child - not itself - as the node's tree with
 * the job's coordinator.
 *
 * Why a process between Slurm and the script: Slurm ends a job (preemption,
 * requeue, time limit, scancel) with SIGCONT+SIGTERM to the batch task, and
 * proctrack/cgroup sends anything but SIGKILL to slurmstepd's children only.
 * The batch shell (dash) unblocks every signal when it starts, so a SIGTERM
 * blocked for it by the plugin killed the script before any checkpoint.  Here
 * SIGTERM reaches this process instead, which the script cannot change:
 *
 *   1. SIGTERM: `crjob checkpoint JOBID --stop` (within --stop-timeout,
 *      which must fit in what Slurm leaves: GraceTime with --signal=B:TERM@T
 *      and SchedulerParameters=preempt_send_user_signal, else KillWait);
 *      the coordinator commits a generation of every node and kills the
 *      trees.  The script never sees the SIGTERM, so its images hold none:
 *      nothing delivers it again after the restore.  This process is not in
 *      the images either: the restored job has `crjob resume` as its task.
 *   2. Then, if the job still runs (the signal came before the end:
 *      --signal=B:TERM@T before a time limit, or preemption with
 *      preempt_send_user_signal), `scontrol requeue JOBID`: the job runs
 *      again and the plugin resumes it from that generation.  A job Slurm
 *      ends already (requeued, preempted at the end of GraceTime, cancelled,
 *      timed out) is left to Slurm.
 *   3. A checkpoint that cannot be made (no coordinator, the child not
 *      registered, a failure) lets the SIGTERM through to the script, as
 *      without crjob.
 *
 * Other signals Slurm sends the batch task (scancel --batch --signal, the
 * job's --signal=B:SIG) go on to the script, whose trap expects them.  The
 * script's exit status (or signal) is this process's.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crjob.h"

#define BATCH_REGISTER_WAIT_S	30	/* the plugin starts the coordinator beside us */
#define BATCH_REAP_WAIT_MS	10000	/* for the child the coordinator killed */

struct batch {
	struct cli *cli;
	const char *node;		/* NAME,AGENT,IP of this node */
	pid_t child;
	int status;			/* the child's wait status, once reaped */
	bool reaped;
	bool registered;
	bool stopping;			/* SIGTERM taken: later ones are Slurm's repeats */
	int tries;
	int stop_timeout;
	int sfd;			/* signalfd */
	sigset_t old;			/* the mask this process got */
};

/* what goes to the script as it would without us */
static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT };

static void batch_sigset(sigset_t *set)
{
	size_t i;

	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGCHLD);
	for (i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(set, forwarded[i]);
}

static int start_child(struct batch *b, char **script)
{
	b->child = fork();
	if (b->child < 0) {
		fprintf(stderr, "crjob batch: job %s: fork: %s\n", b->cli->job, strerror(errno));
		return -errno;
	}
	if (b->child)
		return 0;
	/* a tree of its own: its session and group are in the images, ours are not */
	setsid();
	close(b->sfd);
	sigprocmask(SIG_SETMASK, &b->old, NULL);
	execv(script[0], script);
	fprintf(stderr, "crjob batch: can't run %s: %s\n", script[0], strerror(errno));
	_exit(127);
}

/* the child as this node's tree; EX_NOTFOUND while the coordinator is not up */
static int register_child(struct batch *b)
{
	Crjob__Msg req, *rep;
	Crjob__Node *n;
	char spec[1024];
	int ret;

	snprintf(spec, sizeof(spec), "%s,%d", b->node, (int)b->child);
	if (node_parse_spec(spec, &n))
		return EX_USAGE;
	cli_request(&req, CRJOB__OP__REGISTER, b->cli->job);
	req.nodes = &n;
	req.n_nodes = 1;
	ret = cli_call(b->cli, &req, CALL_TIMEOUT_MS, false, &rep);
	if (!ret)
		crjob__msg__free_unpacked(rep, NULL);
	crjob__node__free_unpacked(n, NULL);
	return ret;
}

/* the coordinator has written where it listens (quietly: it may start after us) */
static bool coord_up(struct cli *cli)
{
	char path[4400];

	if (cli->coord)
		return true;
	if (cli_store(cli))
		return false;
	snprintf(path, sizeof(path), "%s/coord/%s", cli->store, cli->job);
	return !access(path, R_OK);
}

static void try_register(struct batch *b)
{
	int ret;

	if (b->registered || b->reaped || b->tries >= BATCH_REGISTER_WAIT_S)
		return;
	ret = coord_up(b->cli) || b->tries == BATCH_REGISTER_WAIT_S - 1 ?
		register_child(b) : EX_NOTFOUND;
	b->tries = ret == EX_NOTFOUND ? b->tries + 1 : BATCH_REGISTER_WAIT_S;
	b->registered = ret == EX_DONE;
	if (ret == EX_DONE)
		fprintf(stderr, "crjob batch: job %s: tree %d of %s registered\n", b->cli->job,
			(int)b->child, b->node);
	else if (b->tries >= BATCH_REGISTER_WAIT_S)
		fprintf(stderr, "crjob batch: job %s: not registered (%d): no checkpoints\n",
			b->cli->job, ret);
}

static void reap(struct batch *b)
{
	int st;

	if (!b->reaped && waitpid(b->child, &st, WNOHANG) == b->child) {
		b->status = st;
		b->reaped = true;
	}
}

/* the child, gone after the coordinator's --stop; SIGKILL if it lingers */
static void wait_child(struct batch *b, int ms)
{
	for (; ms > 0 && !b->reaped; ms -= 50) {
		usleep(50 * 1000);
		reap(b);
	}
	if (!b->reaped) {
		kill(b->child, SIGKILL);
		if (waitpid(b->child, &b->status, 0) == b->child)
			b->reaped = true;
	}
}

/* one field of `scontrol show job -o JOB` ("JobState", ...), or "" */
static void job_field(const char *job, const char *name, char *buf, size_t len)
{
	char cmd[128], line[8192], key[64], *p;
	FILE *f;

	buf[0] = '\0';
	snprintf(cmd, sizeof(cmd), "scontrol show job -o '%s' 2>/dev/null", job);
	snprintf(key, sizeof(key), " %s=", name);
	f = popen(cmd, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, key);
		if (p) {
			p += strlen(key);
			snprintf(buf, len, "%.*s", (int)strcspn(p, " \n"), p);
		}
	}
	pclose(f);
}

/*
 * After the checkpoint: a job that Slurm does not end already (the signal
 * came ahead of a time limit or of the end of GraceTime) is requeued, so
 * that it resumes from the generation just made.
 */
static void requeue_if_running(struct batch *b)
{
	char state[64], cmd[128];
	int st;

	job_field(b->cli->job, "JobState", state, sizeof(state));
	if (strcmp(state, "RUNNING")) {
		fprintf(stderr, "crjob batch: job %s: %s: Slurm ends it\n", b->cli->job,
			state[0] ? state : "state unknown");
		return;
	}
	snprintf(cmd, sizeof(cmd), "scontrol requeue '%s'", b->cli->job);
	st = system(cmd);
	if (st)
		fprintf(stderr, "crjob batch: job %s: `%s` failed (%#x): restart it with "
			"--restart-from=%s\n", b->cli->job, cmd, st, b->cli->job);
	else
		fprintf(stderr, "crjob batch: job %s: requeued\n", b->cli->job);
}

/* checkpoint --stop; 0 when the job's trees are committed and gone */
static int checkpoint_stop(struct batch *b)
{
	Crjob__Msg req, *rep;
	int ret;

	fprintf(stderr, "crjob batch: job %s: SIGTERM: checkpoint, then stop\n", b->cli->job);
	fflush(stderr);
	cli_request(&req, CRJOB__OP__CHECKPOINT, b->cli->job);
	req.has_stop = 1;
	req.stop = 1;
	ret = cli_call(b->cli, &req, b->stop_timeout * 1000, false, &rep);
	if (ret)
		return ret;
	print_result(b->cli, rep);
	fflush(stdout);
	crjob__msg__free_unpacked(rep, NULL);
	return 0;
}

/*
 * What crjob batch and crjob resume (the batch task of a restored job) do
 * at Slurm's SIGTERM: checkpoint --stop, then the requeue if the job still
 * runs.  0 when the job's trees were committed and stopped.
 */
int batch_stop(struct cli *cli, int timeout_s)
{
	struct batch b = { .cli = cli, .stop_timeout = timeout_s };
	int ret;

	ret = checkpoint_stop(&b);
	if (!ret)
		requeue_if_running(&b);
	return ret;
}

static void on_sigterm(struct batch *b)
{
	if (b->stopping || b->reaped)
		return;
	b->stopping = true;
	if (!b->registered || checkpoint_stop(b)) {
		fprintf(stderr, "crjob batch: job %s: no checkpoint: SIGTERM to the script\n",
			b->cli->job);
		kill(b->child, SIGTERM);
		return;
	}
	wait_child(b, BATCH_REAP_WAIT_MS);
	requeue_if_running(b);
}

static void on_signal(struct batch *b, int sig)
{
	if (sig == SIGCHLD)
		reap(b);
	else if (sig == SIGTERM)
		on_sigterm(b);
	else if (!b->reaped)
		kill(b->child, sig);
}

/* this process ends as the script did; after a checkpoint --stop as if SIGTERM had */
static int batch_exit(struct batch *b)
{
	int sig;

	if (b->stopping && b->registered && WIFSIGNALED(b->status) &&
	    WTERMSIG(b->status) == SIGKILL)
		return 128 + SIGTERM;
	if (WIFEXITED(b->status))
		return WEXITSTATUS(b->status);
	sig = WTERMSIG(b->status);
	signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &b->old, NULL);
	raise(sig);
	return 128 + sig;
}

static int batch_loop(struct batch *b)
{
	struct signalfd_siginfo si;
	struct pollfd p = { .fd = b->sfd, .events = POLLIN };
	time_t next = 0;
	int n;

	while (!b->reaped) {
		if (!b->registered && time(NULL) >= next) {
			try_register(b);
			next = time(NULL) + 1;
		}
		n = poll(&p, 1, b->registered ? -1 : 1000);
		if (n < 0 && errno != EINTR)
			return EX_FAILED;
		while (n > 0 && read(b->sfd, &si, sizeof(si)) == sizeof(si))
			on_signal(b, si.ssi_signo);
		reap(b);
	}
	return batch_exit(b);
}

int cmd_batch(struct cli *cli, int argc, char **argv)
{
	const char *node = NULL, *timeout = NULL;
	struct cli_arg args[] = { { "node", true, &node }, { "stop-timeout", true, &timeout },
				  { 0 } };
	struct batch b = { .cli = cli, .stop_timeout = BATCH_STOP_TIMEOUT_S };
	char **script;
	sigset_t set;
	int ret;

	script = cli_command(&argc, argv);
	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	if (!node || !script || !script[0]) {
		fprintf(stderr, "crjob batch: give --node NAME,AGENT,IP and -- SCRIPT\n");
		return EX_USAGE;
	}
	b.node = node;
	if (timeout && atoi(timeout) > 0)
		b.stop_timeout = atoi(timeout);
	/* the signals wait for the loop from now on: none is lost before the child runs */
	batch_sigset(&set);
	sigprocmask(SIG_BLOCK, &set, &b.old);
	b.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (b.sfd < 0) {
		fprintf(stderr, "crjob batch: signalfd: %s: running %s unguarded\n",
			strerror(errno), script[0]);
		sigprocmask(SIG_SETMASK, &b.old, NULL);
		execv(script[0], script);
		return EX_FAILED;
	}
	if (start_child(&b, script))
		return EX_FAILED;
	/* the user's script writes the job's output: ours is not buffered behind it */
	setvbuf(stdout, NULL, _IOLBF, 0);
	return batch_loop(&b);
}
