/*
 * crjob-agent: the node agent (docs/distributed.md).  One event loop; every
 * checkpoint or restore of a tree is a `crd` child whose action script is the
 * agent itself (hook.c), holding crd at post-freeze, post-dump and pre-resume
 * until the job's coordinator says go on.
 */
#ifndef CRJOB_AGENT_H
#define CRJOB_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"

#define AGENT_DEFAULT_CONF	"/etc/crjob/agent.conf"
#define AGENT_MAX_ALLOW		64

struct event;
struct event_base;

/* ------------------------------------------------------------------ log.c */
void agent_log_init(int fd);
void alog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ conf.c */
#define AGENT_MAX_CAPTURE	32

struct agent_conf {
	char *listen;
	char *store;
	char *crd;
	char *munge_socket;
	char *log;
	char *pidfile;
	char *name;
	char *crd_logs;		/* keep crd's logs here (default: in memory only) */
	int max_parallel;
	/* node-local directories whose files the trees use go into the images */
	char *capture[AGENT_MAX_CAPTURE];
	int n_capture;
	int hold_timeout_s;	/* a job held frozen this long without news is let go */
	int n_allow;		/* 0: every user */
	uid_t allow[AGENT_MAX_ALLOW];
};

int conf_load(int argc, char **argv, struct agent_conf *c);
void conf_free(struct agent_conf *c);

/* ------------------------------------------------------------------ child.c */
struct agent;
struct child;
/* a child ended with its wait status */
typedef void (*child_done_cb)(struct agent *a, pid_t pid, int status, void *arg);

struct spawn_opts {
	int out_fd;		/* stdout, -1: /dev/null */
	int err_fd;		/* stderr, -1: /dev/null */
	int hook_fd;		/* inherited as $CRJOB_HOOK_FD, -1: none */
};

int child_spawn(struct agent *a, char *const argv[], const struct spawn_opts *o,
		child_done_cb done, void *arg, pid_t *pid);
/* forget a child's callback (its owner is gone); it is still reaped */
void child_forget(struct agent *a, pid_t pid);
/* reap every child that ended (SIGCHLD) */
void child_reap(struct agent *a);
int child_count(const struct agent *a);

/* ------------------------------------------------------------------ auth.c */
/* 0 or -EPERM with the reason in why */
int auth_request(const struct agent *a, uid_t caller, uid_t owner, char *why, size_t size);
int auth_tree(pid_t root, uid_t owner, char *why, size_t size);
/* every pid of a tree (root first); *out is malloc'ed */
int tree_pids(pid_t root, pid_t **out, int *n);

/* ------------------------------------------------------------------ slurm-cg.c */
/*
 * Move pids into Slurm job's extern step on this node (every cgroup hierarchy
 * that has it); -ENOENT if there is none (not a Slurm job id, or no
 * PrologFlags=Contain), the reason in why.
 */
int slurm_adopt(const struct agent *a, const char *job, uid_t uid, const pid_t *pids, int n,
		char *why, size_t size);
/* the trees of jobs that ended on this node (their extern step is gone) killed */
void slurm_reap(struct agent *a);

/* ------------------------------------------------------------------ spawn.c */
/* SPAWN: start a program for the caller in its Slurm job's extern step here */
void spawn_serve(struct agent *a, struct rpc_conn *c, const Crjob__Msg *m,
		 const struct rpc_peer *from);

/* ------------------------------------------------------------------ topo.c */
struct topo;
int topo_open(struct topo **out);
void topo_close(struct topo *t);
/* "cores=N numa=M" */
void topo_summary(const struct topo *t, char *buf, size_t size);
/* the binding of a process as an hwloc list ("0-3,8"), malloc'ed; NULL on failure */
char *topo_get_binding(const struct topo *t, pid_t pid);
/* bind every thread of the tree to the cpuset of another node, mapped onto this one */
int topo_rebind(const struct topo *t, pid_t root, const char *cpuset, char *why, size_t size);

/* ------------------------------------------------------------------ job.c */
enum tree_state {
	T_IDLE,
	T_STARTED,	/* crd runs, not yet at a hook */
	T_FROZEN,	/* at post-freeze */
	T_QUEUED,	/* DUMP asked, waiting for a max_parallel slot */
	T_DUMPING,	/* let go from post-freeze */
	T_DUMPED,	/* at post-dump */
	T_RELEASING,	/* let go from post-dump (THAW) or failed (ABORT): crd ends */
	T_RESTORING,	/* crd restore runs, not yet at pre-resume */
	T_RESTORED,	/* at pre-resume */
	T_RESUMING,	/* let go from pre-resume */
	T_UNLOCKING,	/* crd net-unlock runs */
	T_DONE,
	T_FAILED,
};

struct tree {
	struct job *job;
	pid_t pid;		/* the tree's root */
	char *writer;
	char *cpuset;		/* binding as dumped */
	uint64_t bytes;
	enum tree_state state;
	pid_t crd;		/* crd dump/restore/net-unlock child, 0 if none */
	int hook_fd;		/* the agent's end of the hook socketpair, -1 */
	struct event *hook_ev;
	int out_fd;		/* crd restore's stdout (the restored pid), -1 */
	char outbuf[32];
	size_t outlen;
	char hookbuf[128];	/* a partial line from the hook */
	size_t hooklen;
	int log_fd;		/* crd's log: a memfd, or a file in crd_logs */
	char log[256];		/* that file's path, "" for a memfd */
	char *error;		/* why it failed, with the crd log's tail */
	int err;		/* -errno of the failure */
	bool restored;		/* by this agent (KILL may kill it) */
};

enum job_phase {
	J_IDLE,
	J_FREEZING,
	J_FROZEN,
	J_DUMPING,
	J_DUMPED,
	J_THAWING,
	J_ABORTING,
	J_RESTORING,
	J_RESTORED,
	J_RESUMING,
	J_KILLING,
};

#define JOB_MAX_ENDED	16

struct job {
	struct job *next;
	char *id;
	char *store;
	char *from;		/* RESTORE: the job whose generation it is (--restart-from) */
	uid_t owner;
	uint64_t gen;
	bool stop;
	bool pidns;
	bool self_abort;	/* the agent gave up, not its coordinator: keep the images */
	char **remap;		/* RESTORE: "OLD=NEW" */
	int n_remap;
	enum job_phase phase;
	int ntrees;
	struct tree *trees;
	/* the request waiting for this phase to end */
	struct rpc_conn *conn;
	uint64_t req_id;
	Crjob__Op req_op;
	bool pending;		/* a request waits (conn NULL: its connection closed) */
	struct event *deadline;
	struct event *ticker;	/* DUMP progress EVENTs */
	struct event *hold;	/* held (frozen, dumped, restored) too long */
	uint32_t deadline_ms;	/* FREEZE's: the coordinator's patience for the freeze */
	enum job_phase held;
	/* roots of trees restored here that ended (the agent reaps them): for WAIT */
	struct {
		pid_t pid;
		int status;
	} ended[JOB_MAX_ENDED];
	int n_ended;
	struct agent *a;
};

/* a job whose extern step is gone on this node: since when (slurm-cg.c) */
struct reap_wait {
	struct reap_wait *next;
	char dir[4096 + 400];
	double since;
	bool seen;
};

/* ------------------------------------------------------------------ main.c */
struct agent {
	struct agent_conf conf;
	struct event_base *base;
	struct rpc *rpc;
	struct rpc_listener *listener;
	struct topo *topo;
	struct job *jobs;
	struct child *children;
	char self[4096];	/* this executable: the hook crd runs */
	char crd[4096];
	int active;		/* crd dumps/restores working now (max_parallel) */
	struct event *reaper;	/* slurm_reap() every second */
	struct reap_wait *reap;	/* jobs that ended here, whose trees slurm_reap() kills */
	bool exiting;
};

/* ------------------------------------------------------------------ serve.c */
void serve_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from, void *arg);
void serve_close(struct rpc_conn *c, int err, void *arg);
/* an EVENT with the trees' progress to the job's pending request */
void job_event(struct job *j);
/* answer the job's pending request (and forget it) */
void job_reply(struct job *j, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ job.c */
struct job *job_find(struct agent *a, const char *id);
struct job *job_get(struct agent *a, const char *id);
void job_reset_trees(struct job *j);
int job_set_trees(struct job *j, Crjob__Tree **trees, size_t n, const char *node);
const char *job_phase_name(enum job_phase p);
/* the job's directory in the store, owned by the owner, mode 0700 */
int job_prepare_dir(struct job *j, char *why, size_t size);
int job_check_from(struct job *j, char *why, size_t size);
/* checkpoint: FREEZE, DUMP, THAW, ABORT */
int job_freeze(struct job *j, uint32_t deadline_ms, char *why, size_t size);
int job_dump(struct job *j);
int job_thaw(struct job *j);
int job_abort(struct job *j);
/* restart: RESTORE, RESUME, KILL */
int job_restore(struct job *j, Crjob__IpRemap **remap, size_t n_remap);
int job_resume(struct job *j);
int job_kill(struct job *j, char *why, size_t size);
/* a child the agent did not start ended: a restored tree's root, maybe */
void job_root_ended(struct agent *a, pid_t pid, int status);
/* WAIT: 0 and the status of root pid that ended, -EAGAIN if it runs, -ESRCH if unknown */
int job_root_status(const struct job *j, pid_t pid, int *status);
/* let queued trees work while fewer than max_parallel do */
void agent_pump(struct agent *a);
/* the hook of a tree reached an action; 'y' lets it go on */
int tree_answer(struct tree *t, bool go_on);
/* RESTORE of one tree: its crd restore starts (restore.c) */
int restore_start_tree(struct job *j, struct tree *t);
/* KILL, after a tree's crd ended: kill what it restored, then unlock (restore.c) */
void kill_tree_now(struct job *j, struct tree *t);
/* start a crd child for a tree with a hook socketpair */
int tree_spawn_crd(struct job *j, struct tree *t, char *const argv[], bool want_stdout,
		   child_done_cb done);
void tree_fail(struct job *j, struct tree *t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* a fresh crd log for the tree (what: "dump", "restore") */
int tree_open_log(struct job *j, struct tree *t, const char *what);
/* what a tree's crd log says last */
void tree_log_tail(const struct tree *t, char *buf, size_t size);
/* every tree of the job is in one of the states (a bitmask of 1 << state) */
bool job_all(const struct job *j, unsigned states);
bool job_any(const struct job *j, unsigned states);
/* the requester of the job's pending request is gone */
void job_orphaned(struct job *j);
/* the next step of a job whose tree changed state */
void job_progress(struct job *j);
/* `crd net-unlock PID` of a tree (state T_UNLOCKING until it ends) */
void tree_net_unlock(struct job *j, struct tree *t);

#define ST(s)	(1u << (s))

#endif
