/*
 * crjob resume JOBID [--generation N] [--from JOB] [--node NAME,AGENT,IP]
 *              [-- BATCH-SCRIPT ARGS...]:
 * restore instead of launch, for the batch step of a requeued Slurm job (the
 * SPANK plugin execs it in place of the batch script, which it names after
 * --, and names this node with --node for crjob batch).
 * With --from (sbatch --restart-from=JOB) the generation is another job's of
 * the same owner: JOBID's coordinator restores it and checkpoints JOBID from
 * then on.  Run as the owner, this reads only the owner's job directories.
 *
 * The job's nodes are those of this allocation ($SLURM_JOB_NODELIST; their
 * addresses from scontrol's NodeAddr, since node names need not resolve).
 * The generation's nodes and the new ones are each put in Slurm's order
 * (names compared as versions: node2 < node10) and paired in that order, so
 * the old batch node - the first of the old allocation - goes to this one,
 * the first of the new: the batch tree comes back where Slurm runs the batch
 * step.  Then RESTART at the job's coordinator (restored frozen everywhere,
 * one coordinated thaw), and this process stays as the batch step's task
 * until the restored batch tree ends, and exits with its status (the agent
 * that reaped it says: WAIT).  If the job cannot be restored (no
 * generation, nodes that do not fit, a failed restore, which the
 * coordinator cleans up everywhere), the batch script runs from the
 * beginning, as it would have without crjob.  Slurm's SIGTERM to this task
 * (preempted again, time limit) becomes a checkpoint --stop, as in crjob
 * batch (cmd-batch.c).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crjob.h"
#include "store.h"

#define RESUME_COORD_WAIT_S	30	/* the plugin starts the coordinator beside us */
#define RESUME_REAP_WAIT_MS	5000	/* the agent reaps the batch tree's root */

struct snode {
	char name[256];
	char addr[64];
};

static int by_name(const void *a, const void *b)
{
	return strverscmp(((const struct snode *)a)->name, ((const struct snode *)b)->name);
}

struct nodelist {
	struct snode *v;
	int n;
};

static int add_name(const char *line, void *arg)
{
	struct nodelist *l = arg;
	struct snode *v = realloc(l->v, (l->n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	l->v = v;
	memset(&v[l->n], 0, sizeof(v[0]));
	snprintf(v[l->n++].name, sizeof(v[0].name), "%s", line);
	return 0;
}

static int node_addr(const char *line, void *arg)
{
	struct snode *n = arg;
	const char *a = strstr(line, "NodeAddr=");

	if (a)
		sscanf(a + 9, "%63[^ ]", n->addr);
	return 0;
}

/* this allocation's nodes, with their addresses, in Slurm's order */
static int slurm_nodes(struct nodelist *l)
{
	const char *list = getenv("SLURM_JOB_NODELIST");
	char args[4096];
	int i, ret;

	if (!list || !*list || strchr(list, '\'')) {
		fprintf(stderr, "crjob resume: no SLURM_JOB_NODELIST: not in a Slurm job\n");
		return -EINVAL;
	}
	ret = slurm_hostnames(list, add_name, l);
	for (i = 0; !ret && i < l->n; i++) {
		snprintf(args, sizeof(args), "show node -o '%s'", l->v[i].name);
		ret = scontrol(args, node_addr, &l->v[i]);
		if (!ret && !l->v[i].addr[0]) {
			fprintf(stderr, "crjob resume: node %s: no NodeAddr\n", l->v[i].name);
			ret = -ENOENT;
		}
	}
	if (!ret)
		qsort(l->v, l->n, sizeof(l->v[0]), by_name);
	return ret;
}

/* the generation's node layout, as its coordinator wrote it */
static int gen_layout(struct cli *cli, const char *job, uint64_t *gen, Crjob__Status **out)
{
	struct store_gen_info *gi = NULL;
	struct store_reader *rd;
	struct store *s;
	size_t len;
	void *buf;
	int n, ret;

	ret = store_open(cli->store, &s);
	if (ret)
		return ret;
	if (!*gen) {
		ret = store_list_gens(s, job, &gi, &n);
		if (!ret && n)
			*gen = gi[n - 1].gen;
		free(gi);
		if (!ret && !*gen)
			ret = -ENOENT;
	}
	if (!ret)
		ret = store_reader_open_node(s, job, *gen, "coord", &rd);
	if (!ret) {
		ret = store_get_blob(rd, "job", &buf, &len);
		store_reader_close(rd);
	}
	if (!ret) {
		*out = crjob__status__unpack(NULL, len, buf);
		free(buf);
		ret = *out ? 0 : -EBADMSG;
	}
	store_close(s);
	return ret;
}

/* the generation's node i goes to new node map[i] */
static int pair_nodes(const Crjob__Status *st, const struct nodelist *nl, int *map)
{
	struct snode *old = calloc(st->n_nodes, sizeof(*old));
	size_t i, j;

	if (!old)
		return -ENOMEM;
	for (i = 0; i < st->n_nodes; i++)
		snprintf(old[i].name, sizeof(old[i].name), "%s", st->nodes[i]->name);
	qsort(old, st->n_nodes, sizeof(*old), by_name);
	for (i = 0; i < st->n_nodes; i++)
		for (j = 0; j < st->n_nodes; j++)
			if (!strcmp(st->nodes[i]->name, old[j].name))
				map[i] = j;
	free(old);
	return 0;
}

static int restart(struct cli *cli, const char *from, const Crjob__Status *st, uint64_t gen,
		   const struct nodelist *nl, const int *map)
{
	const char *port = getenv("CRJOB_AGENT_PORT");
	Crjob__Node **nodes = calloc(st->n_nodes, sizeof(*nodes));
	Crjob__Msg req, *rep = NULL;
	char spec[512];
	size_t i;
	int ret = 0, tries;

	for (i = 0; nodes && !ret && i < st->n_nodes; i++) {
		const struct snode *n = &nl->v[map[i]];

		snprintf(spec, sizeof(spec), "%s,%s:%s,%s", n->name, n->addr,
			 port && *port ? port : "7710", n->addr);
		ret = node_parse_spec(spec, &nodes[i]) ? EX_USAGE : 0;
	}
	if (!nodes || ret)
		goto out;
	cli_request(&req, CRJOB__OP__RESTART, cli->job);
	req.has_generation = 1;
	req.generation = gen;
	req.nodes = nodes;
	req.n_nodes = st->n_nodes;
	if (strcmp(from, cli->job))
		req.from_job = (char *)from;
	/* the plugin starts the job's coordinator beside this step: give it time */
	for (tries = 0; tries < RESUME_COORD_WAIT_S; tries++) {
		ret = cli_call(cli, &req, OP_TIMEOUT_MS, false, &rep);
		if (ret != EX_NOTFOUND)
			break;
		sleep(1);
	}
	if (!ret) {
		print_result(cli, rep);
		crjob__msg__free_unpacked(rep, NULL);
	}
out:
	for (i = 0; nodes && i < st->n_nodes; i++)
		if (nodes[i])
			crjob__node__free_unpacked(nodes[i], NULL);
	free(nodes);
	return ret;
}

/*
 * Stay until the restored trees of this node end (they are the agent's
 * children).  Slurm's SIGTERM (preemption, time limit, requeue: this is the
 * batch task) is what crjob batch makes of it: a checkpoint --stop of the
 * job, whose trees then end.
 */
static int wait_trees(struct cli *cli, const Crjob__Node *old, int sfd)
{
	struct signalfd_siginfo si;
	bool stopping = false;
	size_t i;

	for (i = 0; i < old->n_trees; i++) {
		int fd = syscall(SYS_pidfd_open, old->trees[i]->pid, 0);
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };

		if (fd < 0)
			continue;	/* gone already */
		while (!(p[0].revents & POLLIN)) {
			if (poll(p, sfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
				break;
			if (!(p[1].revents & POLLIN) ||
			    read(sfd, &si, sizeof(si)) != sizeof(si) || stopping)
				continue;
			stopping = true;
			if (batch_stop(cli, BATCH_STOP_TIMEOUT_S))
				fprintf(stderr, "crjob resume: job %s: no checkpoint at SIGTERM: the "
					"restored trees run on\n", cli->job);
		}
		close(fd);
	}
	return EX_DONE;
}

/*
 * The exit code of this node's first tree (the batch tree: the plugin
 * registers it first), as the shell would give it: its exit status, or 128 +
 * the signal that killed it.  The agent reaped it; it may not have yet.
 */
static int tree_exit_code(struct cli *cli, const char *agent, const Crjob__Node *old)
{
	Crjob__Tree t = CRJOB__TREE__INIT, *tp = &t;
	Crjob__Msg req, *rep = NULL;
	struct rpc *r;
	int tries, ret, code = EX_DONE;

	if (!old->n_trees || rpc_new(cli->munge_socket, 0, &r))
		return EX_DONE;
	cli_request(&req, CRJOB__OP__WAIT, cli->job);
	t.pid = old->trees[0]->pid;
	req.trees = &tp;
	req.n_trees = 1;
	for (tries = 0; tries < RESUME_REAP_WAIT_MS / 100; tries++) {
		ret = rpc_call(r, agent, &req, CALL_TIMEOUT_MS, NULL, NULL, &rep);
		if (ret || rep->error != -EAGAIN)
			break;
		crjob__msg__free_unpacked(rep, NULL);
		rep = NULL;
		usleep(100000);
	}
	if (!ret && rep && !rep->error && rep->n_trees && rep->trees[0]->has_status) {
		int st = rep->trees[0]->status;

		code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 0;
	} else {
		fprintf(stderr, "crjob resume: job %s: how tree %u ended is not known (%s)\n",
			cli->job, t.pid, ret ? strerror(-ret) :
			rep && rep->message ? rep->message : "no status");
	}
	if (rep)
		crjob__msg__free_unpacked(rep, NULL);
	rpc_free(r);
	return code;
}

/*
 * The batch script from the beginning, when the job cannot be resumed:
 * under crjob batch when --node says this node (it registers the script's
 * tree and takes Slurm's SIGTERM), else alone.
 */
static int run_script(struct cli *cli, const char *node, char **script, int ret,
		      const sigset_t *mask)
{
	char *argv[16 + 256];
	int n = 0, i;

	if (!script || !script[0])
		return ret;
	sigprocmask(SIG_SETMASK, mask, NULL);
	fprintf(stderr, "crjob resume: running %s from the beginning\n", script[0]);
	fflush(stderr);
	if (node && !cli_store(cli)) {
		argv[n++] = "crjob";
		argv[n++] = "--store";
		argv[n++] = (char *)cli->store;
		if (cli->munge_socket) {
			argv[n++] = "--munge-socket";
			argv[n++] = (char *)cli->munge_socket;
		}
		argv[n++] = "batch";
		argv[n++] = (char *)cli->job;
		argv[n++] = "--node";
		argv[n++] = (char *)node;
		argv[n++] = "--";
		for (i = 0; script[i] && n < (int)(sizeof(argv) / sizeof(argv[0])) - 1; i++)
			argv[n++] = script[i];
		argv[n] = NULL;
		execv("/proc/self/exe", argv);
	}
	execv(script[0], script);
	fprintf(stderr, "crjob resume: can't run %s: %s\n", script[0], strerror(errno));
	return ret;
}

int cmd_resume(struct cli *cli, int argc, char **argv)
{
	const char *g = NULL, *from = NULL, *me = getenv("SLURMD_NODENAME");
	const char *node = NULL;
	struct cli_arg args[] = { { "generation", true, &g }, { "from", true, &from },
				  { "node", true, &node }, { 0 } };
	struct nodelist nl = { };
	Crjob__Status *st = NULL;
	uint64_t gen = 0;
	int *map = NULL, ret, mine = -1, code = EX_DONE, sfd;
	char **script = NULL;
	sigset_t term, old;
	size_t i;

	script = cli_command(&argc, argv);
	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	/* Slurm's SIGTERM waits for wait_trees from now on (a signalfd) */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	sfd = signalfd(-1, &term, SFD_NONBLOCK | SFD_CLOEXEC);
	if (g)
		gen = strtoull(g, NULL, 10);
	if (cli_store(cli)) {
		fprintf(stderr, "crjob resume: job %s: no store\n", cli->job);
		return EX_USAGE;
	}
	if (!from || !*from)
		from = cli->job;
	ret = gen_layout(cli, from, &gen, &st);
	if (ret) {
		fprintf(stderr, "crjob resume: job %s: no generation of job %s to resume from in "
			"%s: %s\n", cli->job, from, cli->store, strerror(-ret));
		return run_script(cli, node, script, EX_NOTFOUND, &old);
	}
	ret = slurm_nodes(&nl);
	if (!ret && (size_t)nl.n != st->n_nodes) {
		fprintf(stderr, "crjob resume: job %s: generation %llu ran on %zu nodes, this "
			"allocation has %d\n", cli->job, (unsigned long long)gen, st->n_nodes, nl.n);
		ret = -EINVAL;
	}
	map = calloc(st->n_nodes, sizeof(*map));
	if (!ret && (!map || pair_nodes(st, &nl, map)))
		ret = -ENOMEM;
	if (ret) {
		ret = EX_FAILED;
		goto out;
	}
	for (i = 0; i < st->n_nodes; i++) {
		fprintf(stderr, "crjob resume: job %s: node %s -> %s (%s)\n", cli->job,
			st->nodes[i]->name, nl.v[map[i]].name, nl.v[map[i]].addr);
		if (me && !strcmp(nl.v[map[i]].name, me))
			mine = i;
	}
	ret = restart(cli, from, st, gen, &nl, map);
	if (!ret && mine >= 0) {
		const char *port = getenv("CRJOB_AGENT_PORT");
		char agent[128];

		snprintf(agent, sizeof(agent), "%s:%s", nl.v[map[mine]].addr,
			 port && *port ? port : "7710");
		wait_trees(cli, st->nodes[mine], sfd);
		code = tree_exit_code(cli, agent, st->nodes[mine]);
	}
out:
	free(map);
	free(nl.v);
	crjob__status__free_unpacked(st, NULL);
	/* nothing of the job runs (a failed RESTART is cleaned up everywhere) */
	if (sfd >= 0)
		close(sfd);
	return ret == EX_DONE ? code : run_script(cli, node, script, ret, &old);
}
