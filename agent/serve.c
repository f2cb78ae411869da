/*
 * Requests of the coordinators: checked (docs/distributed.md, Authorization),
 * then handed to the job; the REPLY goes when the job's phase ends.  Every
 * refused request is logged with its reason; the agent serves on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static void fill_tree(Crjob__Tree *pt, const struct tree *t)
{
	crjob__tree__init(pt);
	pt->pid = t->pid;
	pt->writer = t->writer;
	pt->has_bytes = true;
	pt->bytes = t->bytes;
	pt->cpuset = t->cpuset;
}

static void send_reply(struct rpc_conn *c, uint64_t id, Crjob__Op op, int err, const char *msg,
		       const struct job *j)
{
	Crjob__Msg r = CRJOB__MSG__INIT;
	Crjob__Tree *trees = NULL, **tp = NULL;
	int i, n = j ? j->ntrees : 0;

	r.kind = CRJOB__KIND__REPLY;
	r.id = id;
	r.op = op;
	r.has_error = true;
	r.error = err;
	r.message = (char *)msg;
	if (n) {
		trees = calloc(n, sizeof(*trees));
		tp = calloc(n, sizeof(*tp));
	}
	if (trees && tp) {
		for (i = 0; i < n; i++) {
			fill_tree(&trees[i], &j->trees[i]);
			tp[i] = &trees[i];
		}
		r.n_trees = n;
		r.trees = tp;
		r.job = j->id;
		r.has_generation = true;
		r.generation = j->gen;
	}
	rpc_send(c, &r);
	free(trees);
	free(tp);
}

void job_event(struct job *j)
{
	Crjob__Msg ev = CRJOB__MSG__INIT;
	Crjob__Tree *trees, **tp;
	int i;

	if (!j->pending || !j->conn || !j->ntrees)
		return;
	trees = calloc(j->ntrees, sizeof(*trees));
	tp = calloc(j->ntrees, sizeof(*tp));
	if (trees && tp) {
		for (i = 0; i < j->ntrees; i++) {
			fill_tree(&trees[i], &j->trees[i]);
			tp[i] = &trees[i];
		}
		ev.kind = CRJOB__KIND__EVENT;
		ev.id = j->req_id;
		ev.op = j->req_op;
		ev.job = j->id;
		ev.n_trees = j->ntrees;
		ev.trees = tp;
		rpc_send(j->conn, &ev);
	}
	free(trees);
	free(tp);
}

void job_reply(struct job *j, int err, const char *fmt, ...)
{
	char msg[1024] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (!j->pending)
		return;
	j->pending = false;
	if (!j->conn) {
		alog("job %s: the %s reply (%d %s) is lost: its connection closed\n", j->id,
		     rpc_op_name(j->req_op), err, msg);
		return;
	}
	alog("job %s: %s done: %s%s%s\n", j->id, rpc_op_name(j->req_op),
	     err ? strerror(-err) : "ok", *msg ? ": " : "", msg);
	send_reply(j->conn, j->req_id, j->req_op, err, *msg ? msg : NULL, j);
	j->conn = NULL;
}

static void refuse(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		   const struct job *j, int err, const char *why)
{
	alog("refused %s of job %s from uid %u (%s): %s\n", rpc_op_name(m->op),
	     m->job ? m->job : "-", (unsigned)from->uid, from->addr, why);
	send_reply(c, m->id, m->op, err, why, j);
}

/*
 * WAIT: how the roots of trees restored here ended, for the job's owner.  The
 * batch step of a resumed job (crjob resume) exits with its batch tree's
 * status, as the batch script would have.
 */
static void wait_serve(struct agent *a, struct rpc_conn *c, const Crjob__Msg *m,
		       const struct rpc_peer *from)
{
	Crjob__Msg r = CRJOB__MSG__INIT;
	Crjob__Tree *trees = NULL, **tp = NULL;
	const struct job *j = m->job ? job_find(a, m->job) : NULL;
	char why[256] = "";
	int ret = j ? 0 : -ESRCH, status;
	size_t i;

	if (!j)
		snprintf(why, sizeof(why), "no such job on this node");
	else
		ret = auth_request(a, from->uid, j->owner, why, sizeof(why));
	if (!ret) {
		trees = calloc(m->n_trees + 1, sizeof(*trees));
		tp = calloc(m->n_trees + 1, sizeof(*tp));
		ret = trees && tp ? 0 : -ENOMEM;
	}
	for (i = 0; !ret && i < m->n_trees; i++) {
		ret = job_root_status(j, m->trees[i]->pid, &status);
		crjob__tree__init(&trees[i]);
		trees[i].pid = m->trees[i]->pid;
		trees[i].has_status = !ret;
		trees[i].status = status;
		tp[i] = &trees[i];
		if (ret)
			snprintf(why, sizeof(why), "tree %u %s", m->trees[i]->pid,
				 ret == -EAGAIN ? "still runs" : "was not restored here");
	}
	r.kind = CRJOB__KIND__REPLY;
	r.id = m->id;
	r.op = m->op;
	r.has_error = true;
	r.error = ret;
	r.message = *why ? why : NULL;
	if (!ret) {
		r.n_trees = m->n_trees;
		r.trees = tp;
	}
	rpc_send(c, &r);
	free(trees);
	free(tp);
}

static void ping(struct agent *a, struct rpc_conn *c, const Crjob__Msg *m)
{
	Crjob__Msg r = CRJOB__MSG__INIT;
	Crjob__Node node = CRJOB__NODE__INIT;
	Crjob__Tree *trees = NULL, **tp = NULL;
	char topo[64], ip[64], addr[80], *colon;
	struct job *j;
	int n = 0, i;

	for (j = a->jobs; j; j = j->next)
		n += j->ntrees;
	trees = calloc(n + 1, sizeof(*trees));
	tp = calloc(n + 1, sizeof(*tp));
	n = 0;
	for (j = a->jobs; j && trees && tp; j = j->next)
		for (i = 0; i < j->ntrees; i++) {
			fill_tree(&trees[n], &j->trees[i]);
			tp[n] = &trees[n];
			n++;
		}
	topo_summary(a->topo, topo, sizeof(topo));
	snprintf(ip, sizeof(ip), "%s", a->conf.listen);
	colon = strrchr(ip, ':');
	if (colon)
		*colon = '\0';
	snprintf(addr, sizeof(addr), "%s:%d", ip, a->listener ? rpc_listener_port(a->listener) : 0);
	node.name = a->conf.name;
	node.agent = addr;
	node.ip = ip;
	node.topology = topo;
	node.n_trees = trees && tp ? n : 0;
	node.trees = tp;
	r.kind = CRJOB__KIND__REPLY;
	r.id = m->id;
	r.op = m->op;
	r.has_error = true;
	r.node = &node;
	rpc_send(c, &r);
	free(trees);
	free(tp);
}

static bool job_id_ok(const char *id)
{
	const char *p;

	if (!id || !*id || !strcmp(id, ".") || !strcmp(id, "..") || strlen(id) > 128)
		return false;
	for (p = id; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && !strchr("._-", *p))
			return false;
	return true;
}

/* the phase an op needs its job in */
static int phase_ok(const struct job *j, Crjob__Op op)
{
	switch (op) {
	case CRJOB__OP__FREEZE:
	case CRJOB__OP__RESTORE:
		return j->phase == J_IDLE;
	case CRJOB__OP__DUMP:
		return j->phase == J_FROZEN;
	case CRJOB__OP__THAW:
		return j->phase == J_DUMPED;
	case CRJOB__OP__RESUME:
		return j->phase == J_RESTORED;
	case CRJOB__OP__ABORT:
		return j->phase != J_THAWING && j->phase != J_RESUMING;
	case CRJOB__OP__KILL:
		return true;
	default:
		return false;
	}
}

/* FREEZE, RESTORE: a new operation of the job with its owner, store and trees */
static int start_job(struct agent *a, struct job *j, const Crjob__Msg *m, uid_t owner,
		     char *why, size_t size)
{
	size_t i;
	int ret;

	if (!m->n_trees) {
		snprintf(why, size, "no trees");
		return -EINVAL;
	}
	for (i = 0; m->op == CRJOB__OP__FREEZE && i < m->n_trees; i++) {
		ret = auth_tree(m->trees[i]->pid, owner, why, size);
		if (ret)
			return ret;
	}
	ret = job_set_trees(j, m->trees, m->n_trees,
			    m->op == CRJOB__OP__RESTORE && m->node_name ? m->node_name :
			    a->conf.name);
	if (ret) {
		snprintf(why, size, "bad trees (pid or writer name)");
		return ret;
	}
	free(j->store);
	j->store = strdup(m->store && *m->store ? m->store : a->conf.store);
	j->owner = owner;
	j->gen = m->has_generation ? m->generation : 0;
	j->stop = m->has_stop && m->stop;
	j->pidns = m->has_pidns && m->pidns;
	free(j->from);
	j->from = NULL;
	if (!j->store)
		return -ENOMEM;
	if (m->op == CRJOB__OP__RESTORE && m->from_job && *m->from_job &&
	    strcmp(m->from_job, j->id)) {
		if (!job_id_ok(m->from_job)) {
			snprintf(why, size, "bad job id to restore from");
			return -EINVAL;
		}
		j->from = strdup(m->from_job);
		if (!j->from)
			return -ENOMEM;
		ret = job_check_from(j, why, size);
		if (ret)
			return ret;
	}
	if (m->op == CRJOB__OP__FREEZE) {
		ret = job_prepare_dir(j, why, size);
		if (!ret)
			ret = job_freeze(j, m->has_deadline_ms ? m->deadline_ms : 0, why, size);
		return ret;
	}
	return job_restore(j, m->remap, m->n_remap);
}

/* a user's request may name no store but the configured one */
static int store_ok(const struct agent *a, const Crjob__Msg *m, uid_t caller, char *why,
		    size_t size)
{
	const char *s = m->store && *m->store ? m->store : a->conf.store;

	if (!s) {
		snprintf(why, size, "no store: neither the request nor the agent names one");
		return -EINVAL;
	}
	if (s[0] != '/') {
		snprintf(why, size, "store %s: not an absolute path", s);
		return -EINVAL;
	}
	/* the agent makes STORE/jobs/JOB and gives it to the owner: not just anywhere */
	if (caller != 0 && (!a->conf.store || strcmp(s, a->conf.store))) {
		snprintf(why, size, "store %s: only root may name a store the agent is not "
			 "configured with", s);
		return -EPERM;
	}
	return 0;
}

/*
 * Who may ask: FREEZE and RESTORE for the owner they name, the others for the
 * owner of the job.  0, 1 if already answered (nothing to do), or -errno.
 */
static int authorize(struct agent *a, struct rpc_conn *c, const Crjob__Msg *m,
		     const struct rpc_peer *from, struct job *j, uid_t *owner, char *why,
		     size_t size)
{
	int ret;

	if (m->op == CRJOB__OP__FREEZE || m->op == CRJOB__OP__RESTORE) {
		*owner = m->has_owner ? m->owner : from->uid;
		ret = auth_request(a, from->uid, *owner, why, size);
		if (!ret && j && j->phase != J_IDLE)
			ret = auth_request(a, from->uid, j->owner, why, size);
		return ret ?: store_ok(a, m, from->uid, why, size);
	}
	if (j) {
		*owner = j->owner;
		return auth_request(a, from->uid, j->owner, why, size);
	}
	/* nothing of the job here: aborting or killing it is done */
	if (m->op == CRJOB__OP__ABORT || m->op == CRJOB__OP__KILL) {
		send_reply(c, m->id, m->op, 0, "no such job on this node", NULL);
		return 1;
	}
	snprintf(why, size, "no such job on this node");
	return -ENOENT;
}

static int run_op(struct agent *a, struct job *j, const Crjob__Msg *m, uid_t owner, char *why,
		  size_t size)
{
	switch (m->op) {
	case CRJOB__OP__FREEZE:
	case CRJOB__OP__RESTORE:
		return start_job(a, j, m, owner, why, size);
	case CRJOB__OP__DUMP:
		return job_dump(j);
	case CRJOB__OP__THAW:
		return job_thaw(j);
	case CRJOB__OP__ABORT:
		return job_abort(j);
	case CRJOB__OP__RESUME:
		return job_resume(j);
	default:
		return job_kill(j, why, size);
	}
}

/* the job's state admits the op: 0 or -EBUSY with why */
static int job_admits(struct job *j, Crjob__Op op, char *why, size_t size)
{
	/* a coordinator that gave up (deadline, a failed node) aborts what is in progress */
	if (j->pending && (op == CRJOB__OP__ABORT || op == CRJOB__OP__KILL) &&
	    j->phase != J_THAWING)
		job_reply(j, -ECANCELED, "superseded by %s", rpc_op_name(op));
	if (j->pending) {
		snprintf(why, size, "a request of the job is in progress");
		return -EBUSY;
	}
	if (!phase_ok(j, op)) {
		snprintf(why, size, "the job is %s", job_phase_name(j->phase));
		return -EBUSY;
	}
	return 0;
}

/* what any agent request must be: 0 or -errno with why */
static int request_ok(const struct agent *a, const Crjob__Msg *m, char *why, size_t size)
{
	if (m->op < CRJOB__OP__FREEZE || m->op > CRJOB__OP__KILL) {
		snprintf(why, size, "not an agent request");
		return -EOPNOTSUPP;
	}
	if (a->exiting) {
		snprintf(why, size, "the agent is shutting down");
		return -ESHUTDOWN;
	}
	if (!job_id_ok(m->job)) {
		snprintf(why, size, "bad or missing job id");
		return -EINVAL;
	}
	return 0;
}

void serve_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from, void *arg)
{
	struct agent *a = arg;
	struct job *j = NULL;
	char why[512] = "";
	uid_t owner;
	int ret;

	if (m->kind != CRJOB__KIND__REQUEST) {
		alog("%s: ignored a %s that is not a request\n", from->addr, rpc_op_name(m->op));
		return;
	}
	if (m->op == CRJOB__OP__PING) {
		ping(a, c, m);
		return;
	}
	if (m->op == CRJOB__OP__SPAWN) {
		spawn_serve(a, c, m, from);
		return;
	}
	if (m->op == CRJOB__OP__WAIT) {
		wait_serve(a, c, m, from);
		return;
	}
	ret = request_ok(a, m, why, sizeof(why));
	if (!ret) {
		j = job_find(a, m->job);
		ret = authorize(a, c, m, from, j, &owner, why, sizeof(why));
	}
	if (!ret && !j && !(j = job_get(a, m->job)))
		ret = -ENOMEM;
	if (!ret)
		ret = job_admits(j, m->op, why, sizeof(why));
	if (ret) {
		if (ret < 0)
			refuse(c, m, from, j, ret, *why ? why : strerror(-ret));
		return;
	}
	alog("job %s: %s from uid %u (%s)\n", m->job, rpc_op_name(m->op), (unsigned)from->uid,
	     from->addr);
	j->pending = true;
	j->conn = c;
	j->req_id = m->id;
	j->req_op = m->op;
	ret = run_op(a, j, m, owner, why, sizeof(why));
	if (ret) {
		alog("refused %s of job %s from uid %u (%s): %s\n", rpc_op_name(m->op), m->job,
		     (unsigned)from->uid, from->addr, why);
		if (j->phase == J_FREEZING || j->phase == J_RESTORING)
			j->phase = J_IDLE;
		job_reply(j, ret, "%s", *why ? why : strerror(-ret));
	}
}

void serve_close(struct rpc_conn *c, int err, void *arg)
{
	struct agent *a = arg;
	struct job *j;

	for (j = a->jobs; j; j = j->next)
		if (j->conn == c) {
			j->conn = NULL;
			if (j->pending)
				job_orphaned(j);
		}
}
