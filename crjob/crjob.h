/* crjob: the user's command line for checkpoint/restart of jobs (docs/distributed.md). */
#ifndef CRJOB_CLI_H
#define CRJOB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "rpc.h"
#include "util.h"	/* json_str */

/* exit codes, as docs/distributed.md fixes them */
enum {
	EX_DONE = 0,
	EX_FAILED = 1,		/* failed: job unchanged, previous generation intact */
	EX_USAGE = 2,
	EX_NOTFOUND = 3,	/* job or coordinator not found or unreachable */
	EX_DENIED = 4,		/* not the job's owner */
};

#define CALL_TIMEOUT_MS		30000
/* checkpoint, restart: as long as they take */
#define OP_TIMEOUT_MS		(24 * 3600 * 1000)

struct cli {
	const char *store;	/* --store, $CRJOB_STORE or /etc/crjob/crjob.conf */
	const char *coord;	/* --coord HOST:PORT, else STORE/coord/JOBID */
	const char *munge_socket;
	bool json;
	bool quiet_busy;	/* a -EBUSY reply is not reported (the caller retries) */
	int error;		/* the coordinator's or agent's error of the last failed call */
	const char *job;
	char coord_buf[300];
	char store_buf[4096];
};

/* main.c */
int cli_call(struct cli *cli, Crjob__Msg *req, int timeout_ms, bool progress, Crjob__Msg **reply);
int cli_call_at(struct cli *cli, const char *addr, const char *what, Crjob__Msg *req,
		int timeout_ms, bool progress, Crjob__Msg **reply);
void cli_request(Crjob__Msg *m, Crjob__Op op, const char *job);
int cli_store(struct cli *cli);
#define CLI_MAX_MULTI		4096
struct cli_arg {
	const char *name;	/* without the leading -- */
	bool has_val;
	const char **val;	/* the value, or "" for a flag; NULL if absent */
	const char **multi;	/* repeated values (CLI_MAX_MULTI slots), instead of val */
	int nmulti;
};
int cli_args(struct cli *cli, int argc, char **argv, struct cli_arg *args, bool need_job);
char **cli_command(int *argc, char **argv);

/* out.c */
void print_status(const struct cli *cli, const Crjob__Status *st, const char *text);
void print_gens(const struct cli *cli, const Crjob__Generation *const *g, size_t n);
void print_result(const struct cli *cli, const Crjob__Msg *reply);
void progress_event(const Crjob__Msg *ev, void *arg);
void progress_end(void);
int parse_duration(const char *s, unsigned *seconds);
void fmt_bytes(char *buf, size_t len, unsigned long long b);

/* slurm.c */
int scontrol(const char *args, int (*fn)(const char *line, void *arg), void *arg);
int slurm_counts(const char *s, long *v, int max);
int slurm_hostnames(const char *list, int (*fn)(const char *name, void *arg), void *arg);

/* commands */
int cmd_checkpoint(struct cli *cli, int argc, char **argv);
int cmd_restart(struct cli *cli, int argc, char **argv);
int cmd_status(struct cli *cli, int argc, char **argv);
int cmd_ping(struct cli *cli, int argc, char **argv);
int cmd_list(struct cli *cli, int argc, char **argv);
int cmd_history(struct cli *cli, int argc, char **argv);
int cmd_interval(struct cli *cli, int argc, char **argv);
int cmd_register(struct cli *cli, int argc, char **argv);
int cmd_shutdown(struct cli *cli, int argc, char **argv);
int cmd_resume(struct cli *cli, int argc, char **argv);
int cmd_spawn(struct cli *cli, int argc, char **argv);
int cmd_batch(struct cli *cli, int argc, char **argv);
int cmd_srun(struct cli *cli, int argc, char **argv);
int batch_stop(struct cli *cli, int timeout_s);
#define BATCH_STOP_TIMEOUT_S	20

/* coord/util.c */
int node_parse_spec(const char *spec, Crjob__Node **out);
double now_s(void);

#endif
