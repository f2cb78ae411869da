/*
 * Requests of crjob.  Only the job's owner and root may send them: anyone
 * else gets -EACCES and a log line.  CHECKPOINT and RESTART are answered
 * when their operation ends (with EVENTs for progress in between); while one
 * runs, another CHECKPOINT, RESTART, REGISTER or SHUTDOWN gets -EBUSY (crjob
 * register asks again).
 */
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"
#include "store.h"

void reply_to(struct rpc_conn *c, const Crjob__Msg *req, int err, const char *message,
	      Crjob__Status *st, Crjob__Generation **gens, int ngens)
{
	Crjob__Msg m = CRJOB__MSG__INIT;

	m.kind = CRJOB__KIND__REPLY;
	m.id = req->id;
	m.op = req->op;
	m.has_error = 1;
	m.error = err;
	m.message = (char *)message;
	m.status = st;
	m.gens = gens;
	m.n_gens = ngens;
	rpc_send(c, &m);
}

/*
 * The end of the operation co->caller asked for.  -EACCES answers only a
 * caller who is not the job's owner (crjob exits 4): an operation refused
 * by the store or an agent failed (-EPERM, crjob exits 1).
 */
void caller_reply(struct coord *co, int err, const char *message, Crjob__Generation *gen)
{
	Crjob__Msg req = CRJOB__MSG__INIT;
	Crjob__Status *st;

	if (!co->caller.c)
		return;
	if (err == -EACCES)
		err = -EPERM;
	req.id = co->caller.id;
	req.op = co->caller.op;
	st = state_status(co);
	reply_to(co->caller.c, &req, err, message, st, gen ? &gen : NULL, !!gen);
	state_status_free(st);
	co->caller.c = NULL;
}

/* progress of the operation, to its caller: message "PHASE DONE/TOTAL" and the status */
void caller_event(struct coord *co, const char *fmt, ...)
{
	Crjob__Msg m = CRJOB__MSG__INIT;
	char buf[200];
	va_list ap;

	if (!co->caller.c)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	m.kind = CRJOB__KIND__EVENT;
	m.id = co->caller.id;
	m.op = co->caller.op;
	m.message = buf;
	m.status = state_status(co);
	rpc_send(co->caller.c, &m);
	state_status_free(m.status);
	co->last_event = now_s();
}

/* "PHASE: waiting for NODE NODE ..." while an operation runs */
static void status_text(struct coord *co, char *buf, size_t len)
{
	size_t off;
	int i, n = 0;

	off = snprintf(buf, len, "%s", co->phase);
	for (i = 0; co->op && i < co->nodes.n && off < len; i++) {
		if (!co->nodes.v[i]->wait_id)
			continue;
		if (n++ == 8) {
			off += snprintf(buf + off, len - off, " ...");
			break;
		}
		off += snprintf(buf + off, len - off, "%s %s", n == 1 ? ": waiting for" : "",
				co->nodes.v[i]->n->name);
	}
	if (steps_running(co) && off < len) {
		char what[200];

		steps_why(co, what, sizeof(what), false);
		snprintf(buf + off, len - off, "; %s (%d on nodes): no checkpoint until it ends",
			 what, co->nsteps);
	}
}

static void do_status(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	Crjob__Status *st = state_status(co);
	char text[400];

	status_text(co, text, sizeof(text));
	reply_to(c, m, st ? 0 : -ENOMEM, text, st, NULL, 0);
	state_status_free(st);
}

/* the store's generations, with the times recorded by the coordinator */
static void do_history(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	struct store_gen_info *gi = NULL;
	Crjob__Generation *g, **v;
	int n = 0, i, ret = 0;

	if (co->last_gen)
		ret = store_list_gens(co->store, co->job, &gi, &n);
	v = calloc(n + 1, sizeof(*v));
	g = calloc(n + 1, sizeof(*g));
	if (ret || !v || !g) {
		reply_to(c, m, ret ?: -ENOMEM, "can't list the job's generations", NULL, NULL, 0);
		goto out;
	}
	for (i = 0; i < n; i++) {
		Crjob__Generation *h = hist_find(co, gi[i].gen);

		if (h)
			g[i] = *h;
		else
			crjob__generation__init(&g[i]);
		g[i].gen = gi[i].gen;
		g[i].has_created = g[i].has_logical = g[i].has_stored = 1;
		g[i].created = gi[i].created;
		g[i].logical = gi[i].logical;
		g[i].stored = gi[i].stored;
		v[i] = &g[i];
	}
	reply_to(c, m, 0, NULL, NULL, v, n);
out:
	free(gi);
	free(v);
	free(g);
}

static void do_set_interval(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	if (m->has_keep)
		co->keep = m->keep;
	periodic_set(co, m->has_interval_s ? m->interval_s : 0);
	pr_info("job %s: interval %u s, keep %u\n", co->job, co->interval_s, co->keep);
	state_save_layout(co);
	do_status(co, c, m);
}

/*
 * The job's trees changed under a checkpoint (a tree registered, a step or an
 * MPI daemon's launch begun): the generation would miss them, or hold a
 * launcher waiting for a daemon it does not have.  Abort it; the job runs
 * on, and the registration, refused as busy until then, is asked again.
 */
static void register_during_checkpoint(struct coord *co, const Crjob__Msg *m)
{
	char why[400];

	if (!co->op || strcmp(co->op->name, "checkpoint") || (!m->n_nodes && !m->n_steps_begun))
		return;
	snprintf(why, sizeof(why), "job %s: %s %s during the checkpoint: it would be missing",
		 co->job, m->n_nodes ? "node" : "step", m->n_nodes ? m->nodes[0]->name :
		 m->steps_begun[0]);
	pr_info("%s\n", why);
	co->op->cancel(co, why);
}

/* add the nodes, or replace those of the same name */
static void do_register(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	size_t i;
	int j, ret = steps_update(co, m);

	for (i = 0; !ret && i < m->n_nodes; i++) {
		for (j = 0; j < co->nodes.n; j++)
			if (!strcmp(co->nodes.v[j]->n->name, m->nodes[i]->name))
				break;
		if (j < co->nodes.n) {
			Crjob__Node *copy = msg_dup(m->nodes[i]);

			if (!copy) {
				ret = -ENOMEM;
				break;
			}
			if (strcmp(co->nodes.v[j]->n->agent, copy->agent))
				agent_drop_conn(co, co->nodes.v[j]);
			crjob__node__free_unpacked(co->nodes.v[j]->n, NULL);
			co->nodes.v[j]->n = copy;
		} else {
			ret = nodeset_add(co, &co->nodes, m->nodes[i]);
		}
		pr_info("job %s: node %s registered (agent %s, ip %s, %zu trees)\n", co->job,
			m->nodes[i]->name, m->nodes[i]->agent, m->nodes[i]->ip,
			m->nodes[i]->n_trees);
	}
	if (ret) {
		reply_to(c, m, ret, "out of memory", NULL, NULL, 0);
		return;
	}
	if (m->n_nodes && !strcmp(co->phase, "stopped"))
		co->phase = "idle";
	if (m->n_nodes)
		state_save_layout(co);
	do_status(co, c, m);
}

static void do_shutdown(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	/* time for the reply to leave before the loop ends */
	struct timeval tv = { 0, 200 * 1000 };

	pr_info("job %s: shutdown requested\n", co->job);
	/* the job is over: a coordinator started later begins from the store alone */
	state_remove_layout(co);
	reply_to(c, m, 0, "coordinator exits", NULL, NULL, 0);
	co->exiting = true;
	event_base_loopexit(co->base, &tv);
}

static const char *start_error(struct coord *co, int err)
{
	switch (err) {
	case -ESRCH:
		return "the job was stopped: restart it first";
	case -ENODEV:
		return "no nodes registered for the job";
	default:
		return strerror(-err);
	}
}

static void do_operation(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	char why[640] = "";
	int ret;

	co->caller = (struct caller){ .c = c, .id = m->id, .op = m->op };
	if (m->op == CRJOB__OP__CHECKPOINT) {
		if (m->has_keep)
			co->keep = m->keep;
		ret = ckpt_start(co, m->has_stop && m->stop);
		if (ret == -EOPNOTSUPP) {
			char what[400];

			steps_why(co, what, sizeof(what), true);
			snprintf(why, sizeof(why), "job %s: can't checkpoint while %s; the job "
				 "runs on", co->job, what);
		} else if (ret)
			snprintf(why, sizeof(why), "job %s: can't checkpoint: %s", co->job,
				 start_error(co, ret));
	} else {
		ret = restart_start(co, m, why, sizeof(why));
	}
	if (ret) {
		pr_err("%s\n", why);
		caller_reply(co, ret, why, NULL);
	}
}

static bool busy(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m)
{
	char why[200];

	if (!co->op)
		return false;
	snprintf(why, sizeof(why), "job %s: a %s is in progress (phase %s)", co->job,
		 co->op->name, co->phase);
	reply_to(c, m, -EBUSY, why, NULL, NULL, 0);
	return true;
}

static bool allowed(struct coord *co, struct rpc_conn *c, const Crjob__Msg *m,
		    const struct rpc_peer *from)
{
	char why[200];

	if (from->uid == 0 || from->uid == co->owner)
		return true;
	pr_warn("job %s: %s from uid %u at %s denied: the job belongs to uid %u\n", co->job,
		rpc_op_name(m->op), from->uid, from->addr, co->owner);
	snprintf(why, sizeof(why), "permission denied: job %s belongs to uid %u", co->job,
		 co->owner);
	reply_to(c, m, -EACCES, why, NULL, NULL, 0);
	return false;
}

void serve_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from, void *arg)
{
	struct coord *co = arg;

	if (m->kind != CRJOB__KIND__REQUEST || !allowed(co, c, m, from))
		return;
	if (co->exiting) {
		reply_to(c, m, -ESHUTDOWN, "the coordinator is exiting", NULL, NULL, 0);
		return;
	}
	switch (m->op) {
	case CRJOB__OP__PING:
	case CRJOB__OP__STATUS:
		do_status(co, c, m);
		break;
	case CRJOB__OP__HISTORY:
		do_history(co, c, m);
		break;
	case CRJOB__OP__SET_INTERVAL:
		do_set_interval(co, c, m);
		break;
	case CRJOB__OP__REGISTER:
		register_during_checkpoint(co, m);
		if (!busy(co, c, m))
			do_register(co, c, m);
		break;
	case CRJOB__OP__SHUTDOWN:
		if (!busy(co, c, m))
			do_shutdown(co, c, m);
		break;
	case CRJOB__OP__CHECKPOINT:
	case CRJOB__OP__RESTART:
		if (!busy(co, c, m))
			do_operation(co, c, m);
		break;
	default:
		reply_to(c, m, -EOPNOTSUPP, "not a coordinator request", NULL, NULL, 0);
	}
}

void serve_close(struct rpc_conn *c, int err, void *arg)
{
	struct coord *co = arg;

	/* the operation goes on without anyone to tell */
	if (co->caller.c == c)
		co->caller.c = NULL;
}
