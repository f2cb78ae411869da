/*
 * crjob-coord: the per-job coordinator.  One libevent loop drives the
 * two-phase checkpoint, the restart on new nodes, periodic checkpoints and
 * the requests of crjob (docs/distributed.md).  All its state is in one
 * struct coord; at most one operation (checkpoint or restart) runs at a time.
 */
#ifndef CRJOB_COORD_H
#define CRJOB_COORD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"

struct event;
struct store;
struct coord;

/* one node of the job and the connection to its agent */
struct cnode {
	struct coord *co;
	Crjob__Node *n;			/* name, agent, ip, trees (owned, unpacked copy) */
	struct rpc_conn *conn;		/* to its agent, NULL until needed (io thread's) */
	uint64_t wait_id;		/* request awaiting its REPLY, 0 if none */
	double t_frozen;		/* when its FREEZE reply came */
	double t_thawed;
	double last_heard;		/* its agent's last message (DUMP: EVENTs) */
	void *shard_ptr;		/* its io thread, NULL before its first request */
	uint64_t sent_id;		/* io thread: last request sent on conn */
	bool dying;			/* freed once its io thread let go of it */
};

struct nodeset {
	struct cnode **v;
	int n;
};

/*
 * The operation in progress.  node_done gets every REPLY to the request a
 * node waits for, or its failure (m NULL, err < 0: disconnect, deadline).
 */
struct op {
	const char *name;
	void (*node_done)(struct coord *co, struct cnode *cn, int err, const char *why,
			  const Crjob__Msg *m);
	/*
	 * give up (the coordinator exits, the job changed under a checkpoint):
	 * ABORT or KILL, then end as a failure; nothing once a checkpoint committed
	 */
	void (*cancel)(struct coord *co, const char *why);
	/* an agent's EVENT updated the progress (may be NULL) */
	void (*event)(struct coord *co);
	void *data;
};

/* the crjob request an operation answers when it ends */
struct caller {
	struct rpc_conn *c;
	uint64_t id;
	Crjob__Op op;
};

#define COORD_MAX_STEPS	256

struct coord {
	struct event_base *base;
	struct rpc *rpc;
	struct rpc_listener *lst;
	struct store *store;
	const char *job, *store_dir, *listen, *munge_socket, *pidfile;
	char coord_file[4400];
	uid_t owner;
	uint32_t interval_s, keep, freeze_timeout_ms;
	int io_threads;
	struct shards *shards;		/* agent io threads, NULL: all in the main loop */

	struct nodeset nodes;		/* the job's current layout */
	struct nodeset lingering;	/* new nodes of a failed restart, their KILL queued */
	/* idle|freezing|dumping|committing|thawing|aborting|restoring|stopped */
	const char *phase;
	uint64_t last_gen;
	char last_error[512];
	Crjob__Generation **hist;	/* what the store does not know of each generation */
	int nhist;

	struct op *op;			/* NULL when idle */
	struct caller caller;
	uint64_t next_id;
	double last_event;		/* last progress EVENT sent to the caller */
	struct event *tick;		/* periodic checkpoints */
	bool exiting;
	/*
	 * srun steps of the job running now ("J.S@NODE", from the SPANK plugin),
	 * and those that ended (an end may be told before its start)
	 */
	char *steps[COORD_MAX_STEPS];
	int nsteps;
	char *ended[COORD_MAX_STEPS];
	int nended;
};

/* steps.c */
int steps_update(struct coord *co, const Crjob__Msg *m);
/* the first running srun step, NULL if none */
const char *steps_running(const struct coord *co);
/* what keeps a checkpoint from starting, as "srun step J.S@N runs" and the like */
void steps_why(const struct coord *co, char *buf, size_t len, bool advice);
void steps_free(struct coord *co);

/* util.c */
double now_s(void);
void *msg_dup(const void *m);
Crjob__Node *node_new(const char *name, const char *agent, const char *ip);
int node_add_tree(Crjob__Node *n, uint32_t pid, const char *writer);
int node_parse_spec(const char *spec, Crjob__Node **out);
int nodeset_add(struct coord *co, struct nodeset *ns, const Crjob__Node *n);
void writer_name(char *buf, size_t len, const char *node, uint32_t pid);
Crjob__Generation *hist_find(struct coord *co, uint64_t gen);

/* state.c: what survives the coordinator (store, STORE/coord/JOBID) */
int state_load(struct coord *co, bool nodes_given, bool interval_given, bool keep_given);
struct store_writer;
int state_begin_gen(struct coord *co, uint64_t gen, struct store_writer **w);
int state_save_gen(struct coord *co, struct store_writer *w, uint64_t gen, bool stopped);
void state_save_layout(struct coord *co);
void state_remove_layout(struct coord *co);
int state_write_coord_file(struct coord *co, int port);
void state_remove_coord_file(struct coord *co);
Crjob__Status *state_status(struct coord *co);
void state_status_free(Crjob__Status *st);
void state_set_error(struct coord *co, const char *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* agents.c */
int agent_send(struct coord *co, struct cnode *cn, Crjob__Msg *m);
void agent_on_msg(struct coord *co, struct cnode *cn, const Crjob__Msg *m, uid_t uid,
		  const char *addr);
void agent_on_close(struct coord *co, struct cnode *cn, int err, uint64_t id);
void agent_drop_conn(struct coord *co, struct cnode *cn);
void nodeset_free(struct coord *co, struct nodeset *ns);
void agent_request(struct coord *co, Crjob__Msg *m, Crjob__Op op);
int agents_pending(const struct nodeset *ns);
void agents_cancel(struct nodeset *ns, bool stale);

/* main.c: an operation ended; the loop ends too if an exit waits for it */
void op_ended(struct coord *co);

/* shard.c: agent io threads */
int shards_init(struct coord *co, int n);
void shards_stop(struct coord *co);
int shard_send(struct coord *co, struct cnode *cn, const Crjob__Msg *m);
void shard_close(struct coord *co, struct cnode *cn);
void shard_free(struct coord *co, struct cnode *cn);

/* serve.c */
void serve_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
	       void *arg);
void serve_close(struct rpc_conn *c, int err, void *arg);
void caller_reply(struct coord *co, int err, const char *message, Crjob__Generation *gen);
void caller_event(struct coord *co, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_to(struct rpc_conn *c, const Crjob__Msg *req, int err, const char *message,
	      Crjob__Status *st, Crjob__Generation **gens, int ngens);

/* ckpt.c */
int ckpt_start(struct coord *co, bool stop);

/* restart.c */
int restart_start(struct coord *co, const Crjob__Msg *req, char *why, size_t len);

/* periodic.c */
int periodic_init(struct coord *co);
void periodic_set(struct coord *co, uint32_t interval_s);
void periodic_free(struct coord *co);

#endif
