/*
 * crjob [--store DIR] [--coord HOST:PORT] [--json] [--munge-socket PATH] CMD ...
 * The global options may stand anywhere on the line.  Each command finds the
 * job's coordinator (--coord, or STORE/coord/JOBID), sends it one request
 * and maps the answer onto the exit codes of docs/distributed.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crjob.h"
#include "log.h"

#define CONF_FILE "/etc/crjob/crjob.conf"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: crjob [--store DIR] [--coord HOST:PORT] [--json] [--munge-socket PATH]\n"
		"             CMD\n"
		"  checkpoint JOBID [--stop]\n"
		"  restart JOBID --node NAME,AGENT,IP [--node ...] [--generation N] [--pidns]\n"
		"  status JOBID\n"
		"  list\n"
		"  history JOBID\n"
		"  interval JOBID 30s|10m|2h|0 [--keep K]\n"
		"  register JOBID [--node NAME,AGENT_HOST:PORT,IP[,PID[+PID...]]]...\n"
		"                 [--step-begun J.S@NODE]... [--step-ended J.S@NODE]...\n"
		"  shutdown JOBID\n"
		"  ping JOBID [--count N]\n"
		"  resume JOBID [--generation G] -- SCRIPT [ARG...]\n"
		"  spawn JOBID --agent HOST:PORT [--output FILE] [--cwd DIR] -- PROGRAM [ARG...]\n"
		"  batch JOBID --node NAME,AGENT,IP [--stop-timeout S] -- SCRIPT [ARG...]\n"
		"  srun --rsh CRMPI-RSH [--mpirun P] [--mpiexec P] [--iface IF] [--dry-run]\n"
		"       -- SRUN [OPTIONS] PROGRAM [ARG...]\n"
		"Exit codes: 0 done, 1 failed (job unchanged), 2 usage, 3 job or coordinator\n"
		"not found, 4 permission denied.\n");
}

/* the store's directory from the option, the environment or the config file */
int cli_store(struct cli *cli)
{
	char line[4200], *k, *v, *end;
	FILE *f;

	if (cli->store)
		return 0;
	cli->store = getenv("CRJOB_STORE");
	if (cli->store && *cli->store)
		return 0;
	cli->store = NULL;
	f = fopen(CONF_FILE, "r");
	while (f && fgets(line, sizeof(line), f)) {
		k = line + strspn(line, " \t");
		v = strchr(k, '=');
		if (!v || strncmp(k, "store", 5) || strspn(k + 5, " \t") != (size_t)(v - k - 5))
			continue;
		v += 1 + strspn(v + 1, " \t");
		for (end = v + strlen(v); end > v && strchr(" \t\r\n", end[-1]); end--)
			;
		*end = '\0';
		snprintf(cli->store_buf, sizeof(cli->store_buf), "%s", v);
		cli->store = cli->store_buf;
	}
	if (f)
		fclose(f);
	return cli->store ? 0 : -ENOENT;
}

/* the coordinator's address: --coord, or the first word of STORE/coord/JOBID */
static int find_coord(struct cli *cli)
{
	char path[4400];
	FILE *f;

	if (cli->coord)
		return EX_DONE;
	if (cli_store(cli)) {
		fprintf(stderr, "crjob: job %s: no store to find its coordinator in: give --store, "
			"$CRJOB_STORE or 'store =' in %s, or --coord\n", cli->job, CONF_FILE);
		return EX_NOTFOUND;
	}
	snprintf(path, sizeof(path), "%s/coord/%s", cli->store, cli->job);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%299s", cli->coord_buf) != 1) {
		fprintf(stderr, "crjob: job %s: no coordinator (%s: %s)\n", cli->job, path,
			f ? "empty" : strerror(errno));
		if (f)
			fclose(f);
		return EX_NOTFOUND;
	}
	fclose(f);
	cli->coord = cli->coord_buf;
	return EX_DONE;
}

void cli_request(Crjob__Msg *m, Crjob__Op op, const char *job)
{
	crjob__msg__init(m);
	m->kind = CRJOB__KIND__REQUEST;
	m->id = (uint64_t)getpid() << 16 | 1;
	m->op = op;
	m->job = (char *)job;
}

static int error_exit(struct cli *cli, const Crjob__Msg *rep)
{
	const char *msg = rep->message && rep->message[0] ? rep->message : strerror(-rep->error);

	cli->error = rep->error;
	if (cli->quiet_busy && rep->error == -EBUSY)
		return EX_FAILED;
	if (cli->json) {
		printf("{\"job\": ");
		json_str(stdout, cli->job);
		printf(", \"ok\": false, \"error\": %d, \"message\": ", rep->error);
		json_str(stdout, msg);
		printf("}\n");
	}
	if (strstr(msg, cli->job))
		fprintf(stderr, "crjob: %s\n", msg);
	else
		fprintf(stderr, "crjob: job %s: %s\n", cli->job, msg);
	return rep->error == -EACCES ? EX_DENIED : EX_FAILED;
}

/* one request to the job's coordinator; an exit code, the reply only on success */
int cli_call(struct cli *cli, Crjob__Msg *req, int timeout_ms, bool progress, Crjob__Msg **reply)
{
	int ret = find_coord(cli);

	if (ret)
		return ret;
	return cli_call_at(cli, cli->coord, "coordinator", req, timeout_ms, progress, reply);
}

/* one request to the daemon (what: "coordinator", "agent") at addr */
int cli_call_at(struct cli *cli, const char *addr, const char *what, Crjob__Msg *req,
		int timeout_ms, bool progress, Crjob__Msg **reply)
{
	struct rpc *r;
	int ret;

	ret = rpc_new(cli->munge_socket, 0, &r);
	if (ret) {
		fprintf(stderr, "crjob: munge: %s\n", strerror(-ret));
		return EX_FAILED;
	}
	ret = rpc_call(r, addr, req, timeout_ms,
		       progress && isatty(STDERR_FILENO) ? progress_event : NULL, NULL, reply);
	rpc_free(r);
	progress_end();
	if (ret) {
		fprintf(stderr, "crjob: job %s: %s at %s unreachable: %s\n", cli->job, what,
			addr, strerror(-ret));
		return EX_NOTFOUND;
	}
	if ((*reply)->has_error && (*reply)->error) {
		ret = error_exit(cli, *reply);
		crjob__msg__free_unpacked(*reply, NULL);
		*reply = NULL;
		return ret;
	}
	return EX_DONE;
}

/* what follows "--" (NULL if none), which is cut from argv for cli_args */
char **cli_command(int *argc, char **argv)
{
	int i;

	for (i = 0; i < *argc; i++)
		if (!strcmp(argv[i], "--")) {
			*argc = i;
			return &argv[i + 1];
		}
	return NULL;
}

/*
 * The job and the options of a command: "--name" alone sets a flag (*val =
 * ""), "--name VALUE" a value; a repeated option with a multi array collects
 * all.  Exit code EX_USAGE after a message, or EX_DONE.
 */
int cli_args(struct cli *cli, int argc, char **argv, struct cli_arg *args, bool need_job)
{
	struct cli_arg *a;
	int i;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--", 2)) {
			if (cli->job)
				goto bad;
			cli->job = argv[i];
			continue;
		}
		for (a = args; a && a->name && strcmp(a->name, argv[i] + 2); a++)
			;
		if (!a || !a->name)
			goto bad;
		if (!a->has_val) {
			*a->val = "";
			continue;
		}
		if (++i == argc)
			goto bad;
		if (a->multi && a->nmulti < CLI_MAX_MULTI)
			a->multi[a->nmulti++] = argv[i];
		else if (a->multi)
			goto bad;
		else
			*a->val = argv[i];
	}
	if (need_job && !cli->job) {
		fprintf(stderr, "crjob %s: which job?\n", argv[0]);
		return EX_USAGE;
	}
	if (!cli->job)
		cli->job = "";
	return EX_DONE;
bad:
	fprintf(stderr, "crjob %s: unexpected '%s'\n", argv[0], argv[i < argc ? i : argc - 1]);
	return EX_USAGE;
}

static const struct {
	const char *name;
	int (*fn)(struct cli *cli, int argc, char **argv);
} cmds[] = {
	{ "checkpoint", cmd_checkpoint }, { "restart", cmd_restart }, { "status", cmd_status },
	{ "list", cmd_list }, { "history", cmd_history }, { "interval", cmd_interval },
	{ "register", cmd_register }, { "shutdown", cmd_shutdown }, { "ping", cmd_ping },
	{ "resume", cmd_resume }, { "spawn", cmd_spawn }, { "batch", cmd_batch },
	{ "srun", cmd_srun },
};

/* take the global options out of argv, wherever they are; -1 on a usage error */
static int global_opts(struct cli *cli, int *argc, char **argv)
{
	int i, n = 0;

	for (i = 1; i < *argc; i++) {
		const char **val = NULL, *a = argv[i];

		/* what follows is a command's (resume, spawn, batch), options and all */
		if (!strcmp(a, "--")) {
			while (i < *argc)
				argv[n++] = argv[i++];
			break;
		}
		if (!strcmp(a, "--json")) {
			cli->json = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		}
		if (!strcmp(a, "--store"))
			val = &cli->store;
		else if (!strcmp(a, "--coord"))
			val = &cli->coord;
		else if (!strcmp(a, "--munge-socket"))
			val = &cli->munge_socket;
		if (!val) {
			argv[n++] = argv[i];
			continue;
		}
		if (++i == *argc)
			return -1;
		*val = argv[i];
	}
	*argc = n;
	argv[n] = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	size_t i;

	/* the rpc and store libraries log their errors; crjob says what failed itself */
	log_init(LOG_ERROR, STDERR_FILENO);
	if (global_opts(&cli, &argc, argv) || argc < 1) {
		usage(stderr);
		return EX_USAGE;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[0], cmds[i].name))
			return cmds[i].fn(&cli, argc, argv);
	fprintf(stderr, "crjob: unknown command '%s'\n", argv[0]);
	usage(stderr);
	return EX_USAGE;
}
