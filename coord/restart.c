/*
 * Restart of a generation on new nodes: old node i -> new node i, every old
 * IP remapped to its new node's IP.  RESTORE to every new agent (the trees
 * come back stopped and network-locked); only when all succeeded, RESUME to
 * all at once.  Any failure: KILL on every new agent, and the error.
 *
 * With from_job (Slurm's --restart-from) the generation is another job's: a
 * new job of the same owner goes on from where that one was checkpointed.
 * This coordinator runs as the owner, so it can only read a job directory
 * that is the owner's (0700), and the agents check that too before they
 * restore anything as root.  Later checkpoints are this job's generations.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"
#include "store.h"

enum step { RESTORE, RESUME, KILL };

static const Crjob__Op step_op[] = {
	[RESTORE] = CRJOB__OP__RESTORE, [RESUME] = CRJOB__OP__RESUME, [KILL] = CRJOB__OP__KILL,
};

struct rst {
	struct op op;
	uint64_t gen;
	char *from;			/* the job whose generation it is: this one or from_job */
	enum step step;
	int err;
	const char *prev_phase;
	struct nodeset nn;		/* the new nodes, with the old nodes' trees */
	char **old_names;		/* the generation's node names, nold of them */
	size_t nold;
	Crjob__IpRemap **remap;
	size_t nremap;
	struct event *timer;
	bool pidns;			/* restore in new pid namespaces */
};

static void rst_free(struct coord *co, struct rst *r)
{
	size_t i;

	nodeset_free(co, &r->nn);
	free(r->from);
	for (i = 0; r->old_names && i < r->nold; i++)
		free(r->old_names[i]);
	free(r->old_names);
	for (i = 0; i < r->nremap; i++)
		crjob__ip_remap__free_unpacked(r->remap[i], NULL);
	free(r->remap);
	if (r->timer)
		event_free(r->timer);
	free(r);
}

static void rst_finish(struct coord *co, struct rst *r)
{
	char msg[300];
	int n = r->nn.n, unanswered = agents_pending(&r->nn);

	agents_cancel(&r->nn, false);
	co->op = NULL;
	if (r->err) {
		/*
		 * A KILL not answered stays queued on its connection (a link that
		 * works again lets it through): those nodes are kept until the next
		 * restart or the coordinator's exit.
		 */
		if (unanswered) {
			nodeset_free(co, &co->lingering);
			co->lingering = r->nn;
			r->nn.v = NULL;
			r->nn.n = 0;
		}
		co->phase = r->prev_phase;
		caller_reply(co, r->err, co->last_error, NULL);
		rst_free(co, r);
		op_ended(co);
		return;
	}
	/* the new layout, connections included */
	nodeset_free(co, &co->nodes);
	co->nodes = r->nn;
	r->nn.v = NULL;
	r->nn.n = 0;
	co->phase = "idle";
	co->last_error[0] = '\0';
	state_save_layout(co);
	if (strcmp(r->from, co->job))
		snprintf(msg, sizeof(msg), "job %s restarted from generation %llu of job %s on %d "
			 "nodes", co->job, (unsigned long long)r->gen, r->from, n);
	else
		snprintf(msg, sizeof(msg), "job %s restarted from generation %llu on %d nodes",
			 co->job, (unsigned long long)r->gen, n);
	pr_info("%s\n", msg);
	caller_reply(co, 0, msg, NULL);
	rst_free(co, r);
	op_ended(co);
}

static void broadcast(struct coord *co, struct rst *r, enum step step)
{
	int i, ret;

	r->step = step;
	for (i = 0; i < r->nn.n; i++) {
		struct cnode *cn = r->nn.v[i];
		Crjob__Msg m;

		agent_request(co, &m, step_op[step]);
		m.has_generation = 1;
		m.generation = r->gen;
		m.trees = cn->n->trees;
		m.n_trees = cn->n->n_trees;
		if (step == RESTORE) {
			m.node_name = r->old_names[i];
			m.remap = r->remap;
			m.n_remap = r->nremap;
			m.has_pidns = r->pidns;
			m.pidns = r->pidns;
			if (strcmp(r->from, co->job))
				m.from_job = r->from;
		}
		ret = agent_send(co, cn, &m);
		if (ret && step != KILL) {
			state_set_error(co, cn->n->name, "can't reach the agent %s: %s",
					cn->n->agent, strerror(-ret));
			r->err = ret;
			break;
		}
	}
}

static void rst_fail(struct coord *co, struct rst *r)
{
	struct timeval tv = { co->freeze_timeout_ms / 1000, (co->freeze_timeout_ms % 1000) * 1000 };

	agents_cancel(&r->nn, true);
	broadcast(co, r, KILL);
	evtimer_add(r->timer, &tv);
	if (!agents_pending(&r->nn))
		rst_finish(co, r);
}

static void rst_node_done(struct coord *co, struct cnode *cn, int err, const char *why,
			  const Crjob__Msg *m)
{
	struct rst *r = co->op->data;

	if (err && r->step != KILL) {
		state_set_error(co, cn->n->name, "%s failed: %s", rpc_op_name(step_op[r->step]),
				why && why[0] ? why : strerror(-err));
		r->err = err < 0 ? err : -EIO;
		rst_fail(co, r);
		return;
	}
	if (r->step == RESTORE && m && m->n_trees)
		pr_debug("job %s: node %s: %zu trees restored\n", co->job, cn->n->name,
			 m->n_trees);
	if (agents_pending(&r->nn))
		return;
	if (r->step != RESTORE) {
		rst_finish(co, r);
		return;
	}
	broadcast(co, r, RESUME);
	if (r->err)
		rst_fail(co, r);
}

static void rst_cancel(struct coord *co, const char *why)
{
	struct rst *r = co->op->data;

	if (r->step == KILL)
		return;
	state_set_error(co, NULL, "%s", why);
	r->err = -ECANCELED;
	rst_fail(co, r);
}

static void rst_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct coord *co = arg;

	pr_warn("job %s: not every agent answered KILL within %u ms\n", co->job,
		co->freeze_timeout_ms);
	rst_finish(co, co->op->data);
}

/* the generation's nodes, from its writer `coord` */
static int load_nodes(struct coord *co, const char *job, uint64_t gen, Crjob__Status **out)
{
	struct store_reader *rd;
	size_t len;
	void *buf;
	int ret;

	ret = store_reader_open_node(co->store, job, gen, "coord", &rd);
	if (ret)
		return ret;
	ret = store_get_blob(rd, "job", &buf, &len);
	store_reader_close(rd);
	if (ret)
		return ret;
	*out = crjob__status__unpack(NULL, len, buf);
	free(buf);
	return *out ? 0 : -EBADMSG;
}

static int add_remap(struct rst *r, const char *old_ip, const char *new_ip)
{
	Crjob__IpRemap *x, **v;
	size_t i;

	for (i = 0; i < r->nremap; i++)
		if (!strcmp(r->remap[i]->old_ip, old_ip))
			return strcmp(r->remap[i]->new_ip, new_ip) ? -EINVAL : 0;
	v = realloc(r->remap, (r->nremap + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	r->remap = v;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	crjob__ip_remap__init(x);
	x->old_ip = strdup(old_ip);
	x->new_ip = strdup(new_ip);
	v[r->nremap++] = x;
	return x->old_ip && x->new_ip ? 0 : -ENOMEM;
}

/* new node i gets old node i's trees; the remap table old IP -> new IP */
static int map_nodes(struct coord *co, struct rst *r, const Crjob__Status *st,
		     const Crjob__Msg *req, char *why, size_t len)
{
	size_t i;
	int ret;

	r->old_names = calloc(st->n_nodes + 1, sizeof(char *));
	if (!r->old_names)
		return -ENOMEM;
	r->nold = st->n_nodes;
	for (i = 0; i < st->n_nodes; i++) {
		Crjob__Node *n = msg_dup(req->nodes[i]);
		size_t j;

		if (!n)
			return -ENOMEM;
		for (j = 0; j < n->n_trees; j++)
			crjob__tree__free_unpacked(n->trees[j], NULL);
		free(n->trees);
		n->trees = NULL;
		n->n_trees = 0;
		for (j = 0; j < st->nodes[i]->n_trees; j++) {
			const Crjob__Tree *t = st->nodes[i]->trees[j];

			if (node_add_tree(n, t->pid, t->writer) ||
			    (t->cpuset && !(n->trees[j]->cpuset = strdup(t->cpuset))))
				return -ENOMEM;
		}
		ret = nodeset_add(co, &r->nn, n);
		crjob__node__free_unpacked(n, NULL);
		r->old_names[i] = strdup(st->nodes[i]->name);
		if (ret || !r->old_names[i])
			return -ENOMEM;
		ret = add_remap(r, st->nodes[i]->ip, req->nodes[i]->ip);
		if (ret == -EINVAL)
			snprintf(why, len, "job %s: old IP %s would move to two new IPs", co->job,
				 st->nodes[i]->ip);
		if (ret)
			return ret;
	}
	return 0;
}

static int rst_prepare(struct coord *co, struct rst *r, const Crjob__Msg *req, char *why,
		       size_t len)
{
	Crjob__Status *st = NULL;
	bool other = req->from_job && *req->from_job && strcmp(req->from_job, co->job);
	int ret;

	r->from = strdup(other ? req->from_job : co->job);
	if (!r->from)
		return -ENOMEM;
	r->gen = req->has_generation && req->generation ? req->generation : co->last_gen;
	r->pidns = req->has_pidns && req->pidns;
	if (other && !(req->has_generation && req->generation)) {
		snprintf(why, len, "job %s: a restart from job %s needs its generation", co->job,
			 r->from);
		return -EINVAL;
	}
	if (!r->gen) {
		snprintf(why, len, "job %s: no committed generation to restart from", co->job);
		return -ENOENT;
	}
	ret = load_nodes(co, r->from, r->gen, &st);
	if (ret) {
		/* another user's job: its directory is 0700, we run as our owner */
		snprintf(why, len, "job %s: generation %llu of job %s: no node layout in the "
			 "store: %s", co->job, (unsigned long long)r->gen, r->from,
			 strerror(-ret));
		return ret;
	}
	if (st->n_nodes != req->n_nodes) {
		snprintf(why, len, "job %s: generation %llu ran on %zu nodes, %zu given", co->job,
			 (unsigned long long)r->gen, st->n_nodes, req->n_nodes);
		ret = -EINVAL;
	} else {
		ret = map_nodes(co, r, st, req, why, len);
		if (ret && !why[0])
			snprintf(why, len, "job %s: %s", co->job, strerror(-ret));
	}
	crjob__status__free_unpacked(st, NULL);
	return ret;
}

int restart_start(struct coord *co, const Crjob__Msg *req, char *why, size_t len)
{
	struct rst *r = calloc(1, sizeof(*r));
	int ret;

	if (!r) {
		snprintf(why, len, "job %s: out of memory", co->job);
		return -ENOMEM;
	}
	ret = rst_prepare(co, r, req, why, len);
	if (!ret && !(r->timer = evtimer_new(co->base, rst_timeout, co)))
		ret = -ENOMEM;
	if (ret) {
		rst_free(co, r);
		return ret;
	}
	r->op.name = "restart";
	r->op.node_done = rst_node_done;
	r->op.cancel = rst_cancel;
	r->op.data = r;
	r->prev_phase = co->phase;
	co->op = &r->op;
	co->phase = "restoring";
	pr_info("job %s: restart of generation %llu of job %s on %d nodes\n", co->job,
		(unsigned long long)r->gen, r->from, r->nn.n);
	broadcast(co, r, RESTORE);
	if (r->err)
		rst_fail(co, r);
	return 0;
}
