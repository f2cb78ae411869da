/*
 * Agent I/O threads.  Every message costs a munge round trip to munged
 * (encode to send, decode to receive, ~50-150 us each): done one after the
 * other in the main loop, a step of 256 nodes costs 256 of each, which is
 * most of a freeze.  So the connections to the agents are spread over
 * --io-threads threads, each with its own event loop and munge context,
 * whose seals and unseals overlap.  The main loop keeps all the state: it
 * hands a thread a copy of each request (SEND), and gets back a copy of
 * each message and each closed connection (notes), in order.
 *
 * A thread alone touches cn->conn of its nodes and never cn->n (the main
 * loop may replace it).  A node is freed by the main loop only after its
 * thread closed its connection and said so (FREED): notes of it queued
 * before are skipped (cn->dying).  (libevent without evthread sets a global
 * debug flag to 1 from every base: helgrind reports that benign race.)
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "coord.h"
#include "log.h"

enum cmd_kind { CMD_SEND, CMD_CLOSE, CMD_FREE, CMD_STOP };
enum note_kind { NOTE_MSG, NOTE_CLOSE, NOTE_FREED };

struct cmd {
	struct cmd *next;
	enum cmd_kind kind;
	struct cnode *cn;
	Crjob__Msg *m;			/* SEND: owned copy */
	char *agent;			/* SEND: where to connect if need be */
};

struct note {
	struct note *next;
	enum note_kind kind;
	struct cnode *cn;
	Crjob__Msg *m;			/* MSG: owned copy */
	uid_t uid;
	char addr[64];
	int err;
	uint64_t id;			/* CLOSE: the last request sent on the connection */
};

/* a FIFO between two threads, with an eventfd to wake the reader */
struct queue {
	pthread_mutex_t mu;
	void *head, **tail;
	int efd;
	struct event *ev;
};

struct shard {
	struct shards *all;
	pthread_t th;
	bool started;
	struct event_base *base;
	struct rpc *rpc;
	struct queue in;		/* struct cmd */
};

struct shards {
	struct coord *co;
	struct shard *v;
	int n, next;
	struct queue out;		/* struct note, to the main loop */
};

/* the first member of cmd and note is next */
static void q_push(struct queue *q, void *item)
{
	uint64_t one = 1;

	*(void **)item = NULL;
	pthread_mutex_lock(&q->mu);
	*q->tail = item;
	q->tail = (void **)item;
	pthread_mutex_unlock(&q->mu);
	/* a full counter (never) only means the reader is already woken */
	if (write(q->efd, &one, sizeof(one)) < 0)
		pr_debug("io thread queue: eventfd write: %s\n", strerror(errno));
}

static void *q_take(struct queue *q)
{
	uint64_t n;
	void *head;

	if (read(q->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_debug("io thread queue: eventfd read: %s\n", strerror(errno));
	pthread_mutex_lock(&q->mu);
	head = q->head;
	q->head = NULL;
	q->tail = &q->head;
	pthread_mutex_unlock(&q->mu);
	return head;
}

static int q_init(struct queue *q, struct event_base *base, event_callback_fn fn, void *arg)
{
	pthread_mutex_init(&q->mu, NULL);
	q->head = NULL;
	q->tail = &q->head;
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, fn, arg);
	if (!q->ev || event_add(q->ev, NULL))
		return -ENOMEM;
	return 0;
}

static void q_fini(struct queue *q)
{
	if (q->ev)
		event_free(q->ev);
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->mu);
}

/* ---------------------------------------------------------------- io thread side */

static void note_post(struct shard *sh, enum note_kind kind, struct cnode *cn, int err,
		      uint64_t id)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n) {
		pr_err("io thread: out of memory, a note of node %p lost\n", (void *)cn);
		return;
	}
	n->kind = kind;
	n->cn = cn;
	n->err = err;
	n->id = id;
	q_push(&sh->all->out, n);
}

static void sh_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		   void *arg)
{
	struct cnode *cn = arg;
	struct shard *sh = cn->shard_ptr;
	struct note *n = calloc(1, sizeof(*n));

	if (n && !(n->m = msg_dup(m))) {
		free(n);
		n = NULL;
	}
	if (!n) {
		pr_err("io thread: out of memory, a message lost\n");
		return;
	}
	n->kind = NOTE_MSG;
	n->cn = cn;
	n->uid = from->uid;
	memcpy(n->addr, from->addr, sizeof(n->addr));
	q_push(&sh->all->out, n);
}

static void sh_close(struct rpc_conn *c, int err, void *arg)
{
	struct cnode *cn = arg;

	cn->conn = NULL;
	note_post(cn->shard_ptr, NOTE_CLOSE, cn, err, cn->sent_id);
}

static void sh_send(struct shard *sh, struct cmd *cmd)
{
	struct cnode *cn = cmd->cn;
	int ret = 0;

	if (!cn->conn)
		ret = rpc_connect(sh->rpc, sh->base, cmd->agent, sh_msg, sh_close, cn, &cn->conn);
	if (ret)
		cn->conn = NULL;
	else
		ret = rpc_send(cn->conn, cmd->m);
	if (ret)
		note_post(sh, NOTE_CLOSE, cn, ret, cmd->m->id);
	else
		cn->sent_id = cmd->m->id;
}

static void sh_commands(evutil_socket_t fd, short what, void *arg)
{
	struct shard *sh = arg;
	struct cmd *cmd = q_take(&sh->in), *next;

	for (; cmd; cmd = next) {
		next = cmd->next;
		switch (cmd->kind) {
		case CMD_SEND:
			sh_send(sh, cmd);
			break;
		case CMD_CLOSE:
		case CMD_FREE:
			if (cmd->cn->conn)
				rpc_conn_close(cmd->cn->conn);
			cmd->cn->conn = NULL;
			if (cmd->kind == CMD_FREE)
				note_post(sh, NOTE_FREED, cmd->cn, 0, 0);
			break;
		case CMD_STOP:
			event_base_loopbreak(sh->base);
			break;
		}
		if (cmd->m)
			crjob__msg__free_unpacked(cmd->m, NULL);
		free(cmd->agent);
		free(cmd);
	}
}

static void *sh_main(void *arg)
{
	struct shard *sh = arg;

	event_base_dispatch(sh->base);
	return NULL;
}

/* ---------------------------------------------------------------- main loop side */

static void main_notes(evutil_socket_t fd, short what, void *arg)
{
	struct shards *ss = arg;
	struct note *n = q_take(&ss->out), *next;

	for (; n; n = next) {
		next = n->next;
		if (n->kind == NOTE_FREED) {
			crjob__node__free_unpacked(n->cn->n, NULL);
			free(n->cn);
		} else if (!n->cn->dying && n->kind == NOTE_MSG) {
			agent_on_msg(ss->co, n->cn, n->m, n->uid, n->addr);
		} else if (!n->cn->dying) {
			agent_on_close(ss->co, n->cn, n->err, n->id);
		}
		if (n->m)
			crjob__msg__free_unpacked(n->m, NULL);
		free(n);
	}
}

static int cmd_post(struct coord *co, struct cnode *cn, enum cmd_kind kind, Crjob__Msg *m)
{
	struct shards *ss = co->shards;
	struct cmd *cmd = calloc(1, sizeof(*cmd));

	if (!cmd)
		return -ENOMEM;
	if (!cn->shard_ptr)
		cn->shard_ptr = &ss->v[ss->next++ % ss->n];
	cmd->kind = kind;
	cmd->cn = cn;
	if (kind == CMD_SEND) {
		cmd->m = msg_dup(m);
		cmd->agent = strdup(cn->n->agent);
		if (!cmd->m || !cmd->agent) {
			if (cmd->m)
				crjob__msg__free_unpacked(cmd->m, NULL);
			free(cmd->agent);
			free(cmd);
			return -ENOMEM;
		}
	}
	q_push(&((struct shard *)cn->shard_ptr)->in, cmd);
	return 0;
}

int shard_send(struct coord *co, struct cnode *cn, const Crjob__Msg *m)
{
	return cmd_post(co, cn, CMD_SEND, (Crjob__Msg *)m);
}

void shard_close(struct coord *co, struct cnode *cn)
{
	if (cn->shard_ptr && cmd_post(co, cn, CMD_CLOSE, NULL))
		pr_err("node %s: out of memory: its connection stays\n", cn->n->name);
}

/* free cn once its thread let go of it; at once if it never had one */
void shard_free(struct coord *co, struct cnode *cn)
{
	cn->dying = true;
	if (cn->shard_ptr && !cmd_post(co, cn, CMD_FREE, NULL))
		return;
	crjob__node__free_unpacked(cn->n, NULL);
	free(cn);
}

static int shard_start(struct shards *ss, struct shard *sh, const char *munge_socket)
{
	int ret;

	sh->all = ss;
	sh->in.efd = -1;
	sh->base = event_base_new();
	if (!sh->base)
		return -ENOMEM;
	ret = rpc_new(munge_socket, 0, &sh->rpc) ?:
	      q_init(&sh->in, sh->base, sh_commands, sh);
	if (ret)
		return ret;
	ret = -pthread_create(&sh->th, NULL, sh_main, sh);
	sh->started = !ret;
	return ret;
}

int shards_init(struct coord *co, int n)
{
	struct shards *ss;
	int i, ret;

	if (n <= 0)
		return 0;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	co->shards = ss;
	ss->co = co;
	ss->out.efd = -1;
	ss->v = calloc(n, sizeof(*ss->v));
	if (!ss->v)
		return -ENOMEM;
	ss->n = n;
	ret = q_init(&ss->out, co->base, main_notes, ss);
	for (i = 0; !ret && i < n; i++)
		ret = shard_start(ss, &ss->v[i], co->munge_socket);
	if (ret)
		pr_err("job %s: can't start %d io threads: %s\n", co->job, n, strerror(-ret));
	return ret;
}

/* stop and join the threads, then free what their last notes release */
void shards_stop(struct coord *co)
{
	struct shards *ss = co->shards;
	struct cmd *cmd;
	int i;

	if (!ss)
		return;
	for (i = 0; i < ss->n; i++) {
		struct shard *sh = &ss->v[i];

		if (sh->started && (cmd = calloc(1, sizeof(*cmd)))) {
			cmd->kind = CMD_STOP;
			q_push(&sh->in, cmd);
			pthread_join(sh->th, NULL);
		}
		/* the loop stopped: what it did not take is taken here */
		if (sh->in.efd >= 0)
			sh_commands(-1, 0, sh);
		q_fini(&sh->in);
		if (sh->rpc)
			rpc_free(sh->rpc);
		if (sh->base)
			event_base_free(sh->base);
	}
	if (ss->out.efd >= 0)
		main_notes(-1, 0, ss);
	q_fini(&ss->out);
	free(ss->v);
	free(ss);
	co->shards = NULL;
}
