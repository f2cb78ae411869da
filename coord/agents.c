/*
 * Connections to the agents.  Each node has at most one request in flight
 * (wait_id); its REPLY, or the loss of the connection, goes to the operation
 * in progress.  A REPLY with another id is a late answer to a request the
 * coordinator gave up on (deadline) and is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"

/*
 * Per-tree bytes written so far, from an EVENT or a REPLY, and the binding
 * the agent found at FREEZE: it goes into the job blob, and RESTORE gives it back.
 */
static void node_progress(struct cnode *cn, Crjob__Tree **trees, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < cn->n->n_trees; j++) {
			Crjob__Tree *t = cn->n->trees[j];
			char *cpuset;

			if (t->pid != trees[i]->pid)
				continue;
			if (trees[i]->has_bytes) {
				t->has_bytes = 1;
				t->bytes = trees[i]->bytes;
			}
			if (!trees[i]->cpuset ||
			    (t->cpuset && !strcmp(t->cpuset, trees[i]->cpuset)))
				continue;
			cpuset = strdup(trees[i]->cpuset);
			if (cpuset) {
				free(t->cpuset);
				t->cpuset = cpuset;
			}
		}
}

/* a message from a node's agent (from the main loop or an io thread's note) */
void agent_on_msg(struct coord *co, struct cnode *cn, const Crjob__Msg *m, uid_t uid,
		  const char *addr)
{
	if (uid != 0 && uid != co->owner) {
		pr_warn("job %s: node %s: message from uid %u at %s ignored (not root)\n",
			co->job, cn->n->name, uid, addr);
		return;
	}
	cn->last_heard = now_s();
	node_progress(cn, m->trees, m->n_trees);
	if (m->node)
		node_progress(cn, m->node->trees, m->node->n_trees);
	if (m->kind == CRJOB__KIND__EVENT && co->op && co->op->event)
		co->op->event(co);
	if (m->kind != CRJOB__KIND__REPLY)
		return;
	if (!cn->wait_id || m->id != cn->wait_id) {
		pr_debug("job %s: node %s: late %s reply %llu dropped\n", co->job, cn->n->name,
			 rpc_op_name(m->op), (unsigned long long)m->id);
		return;
	}
	cn->wait_id = 0;
	if (co->op)
		co->op->node_done(co, cn, m->error, m->message, m);
}

/*
 * The connection that carried request id closed, or the request could not be
 * sent: the node fails if that is the request it waits for.
 */
void agent_on_close(struct coord *co, struct cnode *cn, int err, uint64_t id)
{
	char why[300];

	if (!cn->wait_id || id != cn->wait_id)
		return;
	cn->wait_id = 0;
	snprintf(why, sizeof(why), "agent %s: %s", cn->n->agent,
		 err ? strerror(-err) : "connection closed");
	if (co->op)
		co->op->node_done(co, cn, err ?: -ECONNRESET, why, NULL);
}

static void agent_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		      void *arg)
{
	struct cnode *cn = arg;

	agent_on_msg(cn->co, cn, m, from->uid, from->addr);
}

static void agent_close(struct rpc_conn *c, int err, void *arg)
{
	struct cnode *cn = arg;

	cn->conn = NULL;
	agent_on_close(cn->co, cn, err, cn->wait_id);
}

/*
 * Send request m to the node's agent (connecting if need be); a REPLY is
 * awaited.  With io threads, a failure to send comes back later as a close.
 */
int agent_send(struct coord *co, struct cnode *cn, Crjob__Msg *m)
{
	int ret;

	m->kind = CRJOB__KIND__REQUEST;
	m->id = ++co->next_id;
	if (co->shards) {
		ret = shard_send(co, cn, m);
		if (!ret)
			cn->wait_id = m->id;
		return ret;
	}
	if (!cn->conn) {
		ret = rpc_connect(co->rpc, co->base, cn->n->agent, agent_msg, agent_close, cn,
				  &cn->conn);
		if (ret) {
			cn->conn = NULL;
			return ret;
		}
	}
	ret = rpc_send(cn->conn, m);
	if (ret)
		return ret;
	cn->wait_id = m->id;
	return 0;
}

/* the fields every request to an agent carries */
void agent_request(struct coord *co, Crjob__Msg *m, Crjob__Op op)
{
	crjob__msg__init(m);
	m->op = op;
	m->job = (char *)co->job;
	m->store = (char *)co->store_dir;
	m->has_owner = 1;
	m->owner = co->owner;
}

int agents_pending(const struct nodeset *ns)
{
	int i, n = 0;

	for (i = 0; i < ns->n; i++)
		n += !!ns->v[i]->wait_id;
	return n;
}

/*
 * Forget the replies still awaited.  With stale, the connection of a node
 * that did not answer is closed: what is queued on it (a FREEZE or RESTORE
 * its agent never got, say, behind a dropped link) must not reach the agent
 * later.  Without, it stays: an ABORT, THAW or KILL must reach the agent
 * when the link works again, whoever waits for its reply.
 */
void agents_cancel(struct nodeset *ns, bool stale)
{
	int i;

	for (i = 0; i < ns->n; i++) {
		struct cnode *cn = ns->v[i];

		if (cn->wait_id && stale) {
			pr_warn("node %s: no reply from agent %s, connection closed\n",
				cn->n->name, cn->n->agent);
			agent_drop_conn(cn->co, cn);
		}
		cn->wait_id = 0;
	}
}

void agent_drop_conn(struct coord *co, struct cnode *cn)
{
	if (co->shards) {
		shard_close(co, cn);
		return;
	}
	if (cn->conn)
		rpc_conn_close(cn->conn);
	cn->conn = NULL;
}

void nodeset_free(struct coord *co, struct nodeset *ns)
{
	int i;

	for (i = 0; i < ns->n; i++) {
		struct cnode *cn = ns->v[i];

		if (co->shards) {
			shard_free(co, cn);
			continue;
		}
		if (cn->conn)
			rpc_conn_close(cn->conn);
		crjob__node__free_unpacked(cn->n, NULL);
		free(cn);
	}
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}
