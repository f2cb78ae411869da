/*
 * The two-phase checkpoint: FREEZE (all frozen by the deadline) -> DUMP (all
 * written) -> writer `coord` + store_commit -> THAW.  Any agent error,
 * disconnect or missed deadline before the commit: ABORT to all, the partial
 * generation is removed, the job runs on and last_error names the node.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "coord.h"
#include "log.h"
#include "store.h"

enum step { FREEZE, DUMP, THAW, ABORT };

static const Crjob__Op step_op[] = {
	[FREEZE] = CRJOB__OP__FREEZE, [DUMP] = CRJOB__OP__DUMP,
	[THAW] = CRJOB__OP__THAW, [ABORT] = CRJOB__OP__ABORT,
};

struct ckpt {
	struct op op;
	uint64_t gen;
	bool stop;
	enum step step;
	int err;			/* the failure that made it abort */
	char warn[300];			/* a thaw that failed after the commit */
	struct event *timer;
	struct store_writer *w;		/* writer `coord`, until the commit */
	double t0, t_sent, t_frozen, t_dumped, t_committed;	/* t_sent: all FREEZEs sealed */
};

static void ckpt_fail(struct coord *co, struct ckpt *k, const char *node, int err,
		      const char *why);

static void progress(struct coord *co, struct ckpt *k, bool force)
{
	int n = co->nodes.n;

	if (force || now_s() - co->last_event > 0.1)
		caller_event(co, "%s %d/%d", co->phase, n - agents_pending(&co->nodes), n);
}

static void arm_timer(struct coord *co, struct ckpt *k)
{
	struct timeval tv = { co->freeze_timeout_ms / 1000, (co->freeze_timeout_ms % 1000) * 1000 };

	evtimer_add(k->timer, &tv);
}

/* the silence check of the DUMP step, a few times per freeze timeout */
static void arm_watch(struct coord *co, struct ckpt *k)
{
	unsigned ms = co->freeze_timeout_ms / 4 ?: 1;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(k->timer, &tv);
}

/* send the step's request to every node; the first node that can't be reached fails it */
static void broadcast(struct coord *co, struct ckpt *k, enum step step)
{
	int i, ret;

	k->step = step;
	for (i = 0; i < co->nodes.n; i++) {
		struct cnode *cn = co->nodes.v[i];
		Crjob__Msg m;

		agent_request(co, &m, step_op[step]);
		m.has_generation = 1;
		m.generation = k->gen;
		m.trees = cn->n->trees;
		m.n_trees = cn->n->n_trees;
		m.has_stop = 1;
		m.stop = k->stop;
		if (step == FREEZE) {
			m.has_deadline_ms = 1;
			m.deadline_ms = co->freeze_timeout_ms;
		}
		ret = agent_send(co, cn, &m);
		if (ret && step != ABORT && step != THAW) {
			ckpt_fail(co, k, cn->n->name, ret, "can't reach the agent");
			return;
		}
		if (ret)
			pr_warn("job %s: node %s: can't send %s: %s\n", co->job, cn->n->name,
				rpc_op_name(step_op[step]), strerror(-ret));
	}
}

/* the partial generation, if any writer made it */
static void drop_partial(struct coord *co, uint64_t gen)
{
	char path[4200];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/jobs/%s/gen-%llu.partial", co->store_dir, co->job,
		 (unsigned long long)gen);
	if (!stat(path, &sb) && store_rm(co->store, co->job, gen, NULL))
		pr_warn("job %s: partial generation %llu left to gc\n", co->job,
			(unsigned long long)gen);
}

static double longest_frozen(struct coord *co, double until)
{
	double d = 0;
	int i;

	for (i = 0; i < co->nodes.n; i++) {
		struct cnode *cn = co->nodes.v[i];
		double end = cn->t_thawed > cn->t_frozen ? cn->t_thawed : until;

		if (cn->t_frozen && end - cn->t_frozen > d)
			d = end - cn->t_frozen;
	}
	return d;
}

static void ckpt_finish(struct coord *co, struct ckpt *k)
{
	Crjob__Generation *g = hist_find(co, k->gen);
	double t = now_s();
	char msg[512];

	agents_cancel(&co->nodes, false);
	event_free(k->timer);
	co->op = NULL;
	if (k->err) {
		if (k->w)
			store_writer_abort(k->w);
		drop_partial(co, k->gen);
		co->phase = "idle";
		caller_reply(co, k->err, co->last_error, NULL);
		free(k);
		op_ended(co);
		return;
	}
	if (g) {
		g->frozen_s = longest_frozen(co, t);
		g->total_s = t - k->t0;
	}
	co->phase = k->stop ? "stopped" : "idle";
	state_save_layout(co);
	snprintf(msg, sizeof(msg), "generation %llu committed%s: freeze-all %.1f ms "
		 "(sent in %.1f ms), dump %.1f ms, commit %.1f ms, thaw-all %.1f ms%s%s",
		 (unsigned long long)k->gen, k->stop ? " (job stopped)" : "",
		 (k->t_frozen - k->t0) * 1e3, (k->t_sent - k->t0) * 1e3,
		 (k->t_dumped - k->t_frozen) * 1e3, (k->t_committed - k->t_dumped) * 1e3,
		 (t - k->t_committed) * 1e3, k->warn[0] ? "; " : "", k->warn);
	pr_info("job %s: %s\n", co->job, msg);
	caller_reply(co, 0, msg, g);
	free(k);
	op_ended(co);
}

static void ckpt_fail(struct coord *co, struct ckpt *k, const char *node, int err,
		      const char *why)
{
	if (k->step == ABORT || k->step == THAW)
		return;
	state_set_error(co, node, "%s (generation %llu aborted)", why,
			(unsigned long long)k->gen);
	k->err = err < 0 ? err : -EIO;
	agents_cancel(&co->nodes, true);
	co->phase = "aborting";
	broadcast(co, k, ABORT);
	evtimer_del(k->timer);
	arm_timer(co, k);
	if (!agents_pending(&co->nodes))
		ckpt_finish(co, k);
}

static void ckpt_event(struct coord *co)
{
	progress(co, co->op->data, false);
}

static void ckpt_cancel(struct coord *co, const char *why)
{
	ckpt_fail(co, co->op->data, NULL, -ECANCELED, why);
}

static int hist_add(struct coord *co, struct ckpt *k)
{
	Crjob__Generation *g = calloc(1, sizeof(*g)), **v;

	if (!g)
		return -ENOMEM;
	crjob__generation__init(g);
	g->gen = k->gen;
	g->has_created = g->has_frozen_s = g->has_total_s = g->has_stopped = 1;
	g->created = time(NULL);
	g->frozen_s = longest_frozen(co, now_s());
	g->total_s = now_s() - k->t0;
	g->stopped = k->stop;
	v = realloc(co->hist, (co->nhist + 1) * sizeof(*v));
	if (!v) {
		free(g);
		return -ENOMEM;
	}
	co->hist = v;
	v[co->nhist++] = g;
	return 0;
}

/* forget the records of generations retention removed */
static void hist_prune(struct coord *co)
{
	struct store_gen_info *gi;
	int n, i, j, k = 0;

	if (store_list_gens(co->store, co->job, &gi, &n))
		return;
	for (i = 0; i < co->nhist; i++) {
		for (j = 0; j < n && gi[j].gen != co->hist[i]->gen; j++)
			;
		if (j < n)
			co->hist[k++] = co->hist[i];
		else
			crjob__generation__free_unpacked(co->hist[i], NULL);
	}
	co->nhist = k;
	free(gi);
}

static int commit(struct coord *co, struct ckpt *k)
{
	const char **writers;
	int i, j, n = 1, ret;

	for (i = 0; i < co->nodes.n; i++)
		n += co->nodes.v[i]->n->n_trees;
	writers = calloc(n, sizeof(*writers));
	if (!writers)
		return -ENOMEM;
	n = 0;
	for (i = 0; i < co->nodes.n; i++)
		for (j = 0; j < (int)co->nodes.v[i]->n->n_trees; j++)
			writers[n++] = co->nodes.v[i]->n->trees[j]->writer;
	writers[n++] = "coord";
	ret = hist_add(co, k);
	if (!ret) {
		/* the writer is freed either way */
		ret = state_save_gen(co, k->w, k->gen, k->stop);
		k->w = NULL;
	}
	ret = ret ?: store_commit(co->store, co->job, k->gen, writers, n);
	free(writers);
	if (ret) {
		if (co->nhist && co->hist[co->nhist - 1]->gen == k->gen)
			crjob__generation__free_unpacked(co->hist[--co->nhist], NULL);
		return ret;
	}
	co->last_gen = k->gen;
	co->last_error[0] = '\0';
	if (co->keep && !store_gc(co->store, co->job, co->keep, STORE_GC_GRACE_DEFAULT, 0, NULL))
		hist_prune(co);
	return 0;
}

static void step_done(struct coord *co, struct ckpt *k)
{
	int i, ret;

	switch (k->step) {
	case FREEZE:
		k->t_frozen = now_s();
		evtimer_del(k->timer);
		co->phase = "dumping";
		progress(co, k, true);
		for (i = 0; i < co->nodes.n; i++)
			co->nodes.v[i]->last_heard = k->t_frozen;
		broadcast(co, k, DUMP);
		if (co->op == &k->op)
			arm_watch(co, k);
		break;
	case DUMP:
		evtimer_del(k->timer);
		k->t_dumped = now_s();
		co->phase = "committing";
		ret = commit(co, k);
		if (ret) {
			ckpt_fail(co, k, NULL, ret, "coordinator: commit failed");
			return;
		}
		k->t_committed = now_s();
		co->phase = "thawing";
		progress(co, k, true);
		broadcast(co, k, THAW);
		if (!agents_pending(&co->nodes)) {
			ckpt_finish(co, k);
			return;
		}
		arm_timer(co, k);
		break;
	case THAW:
	case ABORT:
		ckpt_finish(co, k);
		return;
	}
}

static void ckpt_node_done(struct coord *co, struct cnode *cn, int err, const char *why,
			   const Crjob__Msg *m)
{
	struct ckpt *k = co->op->data;
	char buf[300];

	if (err && (k->step == FREEZE || k->step == DUMP)) {
		snprintf(buf, sizeof(buf), "%s failed: %s", rpc_op_name(step_op[k->step]),
			 why && why[0] ? why : strerror(-err));
		ckpt_fail(co, k, cn->n->name, err, buf);
		return;
	}
	if (err && k->step == THAW && !k->warn[0]) {
		snprintf(k->warn, sizeof(k->warn), "node %s: THAW failed: %s", cn->n->name,
			 why && why[0] ? why : strerror(-err));
		snprintf(co->last_error, sizeof(co->last_error), "%s", k->warn);
	}
	if (k->step == FREEZE)
		cn->t_frozen = now_s();
	if (k->step == THAW)
		cn->t_thawed = now_s();
	progress(co, k, false);
	if (!agents_pending(&co->nodes))
		step_done(co, k);
}

/*
 * A DUMP takes as long as the images, so it has no deadline; but agents send
 * an EVENT each second while their trees write.  A node silent for the
 * freeze timeout is taken for lost (a dead link does not always close).
 */
static void check_silence(struct coord *co, struct ckpt *k)
{
	double t = now_s(), limit = co->freeze_timeout_ms / 1e3;
	char why[200];
	int i;

	for (i = 0; i < co->nodes.n; i++) {
		struct cnode *cn = co->nodes.v[i];

		if (cn->wait_id && t - cn->last_heard > limit) {
			snprintf(why, sizeof(why), "no word from its agent for %u ms while dumping",
				 co->freeze_timeout_ms);
			ckpt_fail(co, k, cn->n->name, -ETIMEDOUT, why);
			return;
		}
	}
	arm_watch(co, k);
}

static void ckpt_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct coord *co = arg;
	struct ckpt *k = co->op->data;
	char why[200];
	int i;

	if (k->step == DUMP) {
		check_silence(co, k);
		return;
	}

	for (i = 0; i < co->nodes.n && !co->nodes.v[i]->wait_id; i++)
		;
	if (k->step == FREEZE && i < co->nodes.n) {
		snprintf(why, sizeof(why), "not frozen within the deadline (%u ms)",
			 co->freeze_timeout_ms);
		ckpt_fail(co, k, co->nodes.v[i]->n->name, -ETIMEDOUT, why);
		return;
	}
	if (i < co->nodes.n)
		pr_warn("job %s: node %s: no reply to %s within %u ms, going on\n", co->job,
			co->nodes.v[i]->n->name, rpc_op_name(step_op[k->step]),
			co->freeze_timeout_ms);
	ckpt_finish(co, k);
}

/* the writer names of trees registered without one */
static int name_writers(struct coord *co)
{
	char w[300];
	size_t i, j;

	for (i = 0; i < (size_t)co->nodes.n; i++) {
		Crjob__Node *n = co->nodes.v[i]->n;

		for (j = 0; j < n->n_trees; j++) {
			writer_name(w, sizeof(w), n->name, n->trees[j]->pid);
			if (n->trees[j]->writer && !strcmp(n->trees[j]->writer, w))
				continue;
			free(n->trees[j]->writer);
			if (!(n->trees[j]->writer = strdup(w)))
				return -ENOMEM;
		}
	}
	return 0;
}

/*
 * Start a checkpoint; its end answers co->caller.  -EBUSY while another
 * operation runs, -ESRCH once the job was stopped, -ENODEV without nodes.
 */
int ckpt_start(struct coord *co, bool stop)
{
	struct ckpt *k;
	int i, ret;

	if (co->op)
		return -EBUSY;
	if (!strcmp(co->phase, "stopped"))
		return -ESRCH;
	if (!co->nodes.n)
		return -ENODEV;
	if (steps_running(co))
		return -EOPNOTSUPP;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	ret = name_writers(co) ?: store_next_gen(co->store, co->job, &k->gen) ?:
	      state_begin_gen(co, k->gen, &k->w);
	if (ret) {
		free(k);
		return ret;
	}
	k->timer = evtimer_new(co->base, ckpt_timeout, co);
	if (!k->timer) {
		store_writer_abort(k->w);
		drop_partial(co, k->gen);
		free(k);
		return -ENOMEM;
	}
	k->stop = stop;
	k->t0 = now_s();
	k->op.name = "checkpoint";
	k->op.node_done = ckpt_node_done;
	k->op.cancel = ckpt_cancel;
	k->op.event = ckpt_event;
	k->op.data = k;
	co->op = &k->op;
	for (i = 0; i < co->nodes.n; i++) {
		struct cnode *cn = co->nodes.v[i];
		size_t j;

		cn->t_frozen = cn->t_thawed = 0;
		/* the progress of this checkpoint */
		for (j = 0; j < cn->n->n_trees; j++)
			cn->n->trees[j]->bytes = 0;
	}
	pr_info("job %s: checkpoint of generation %llu on %d nodes%s\n", co->job,
		(unsigned long long)k->gen, co->nodes.n, stop ? ", then stop" : "");
	co->phase = "freezing";
	arm_timer(co, k);
	broadcast(co, k, FREEZE);
	/* k is gone if every agent was unreachable */
	if (co->op == &k->op)
		k->t_sent = now_s();
	return 0;
}
