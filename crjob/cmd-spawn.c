/*
 * crjob spawn JOBID --agent HOST:PORT [--output FILE] [--cwd DIR] -- PROGRAM [ARG...]
 *
 * Start PROGRAM on the node of that agent, as the caller, inside the job's
 * Slurm extern step there (agent/spawn.c), with this environment; print its
 * pid.  crmpi-rsh uses it as the rsh of MPI launchers: no ssh, and every
 * remote daemon is a tree of its node that Slurm and crjob both know.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crjob.h"

extern char **environ;

/* PROGRAM as an absolute path: the agent execs no relative name */
static int resolve(const char *prog, char *out, size_t size)
{
	const char *path = getenv("PATH"), *p, *end;

	if (strchr(prog, '/')) {
		if (!realpath(prog, out))
			return -errno;
		return 0;
	}
	for (p = path ? path : "/usr/bin:/bin"; *p; p = *end ? end + 1 : end) {
		end = strchrnul(p, ':');
		if ((size_t)snprintf(out, size, "%.*s/%s", (int)(end - p), p, prog) < size &&
		    out[0] == '/' && access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

int cmd_spawn(struct cli *cli, int argc, char **argv)
{
	const char *agent = NULL, *output = NULL, *cwd = NULL;
	struct cli_arg args[] = { { "agent", true, &agent }, { "output", true, &output },
				  { "cwd", true, &cwd }, { 0 } };
	char prog[PATH_MAX], abs_out[PATH_MAX], **cmd = NULL;
	Crjob__Msg req, *rep;
	int n = 0, ret;

	cmd = cli_command(&argc, argv);
	for (n = 0; cmd && cmd[n]; n++)
		;
	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	if (!agent || !n) {
		fprintf(stderr, "crjob spawn: give --agent HOST:PORT and -- PROGRAM [ARG...]\n");
		return EX_USAGE;
	}
	if (resolve(cmd[0], prog, sizeof(prog))) {
		fprintf(stderr, "crjob spawn: %s: no such program\n", cmd[0]);
		return EX_USAGE;
	}
	/* the agent opens it as us, from its own directory: make it absolute */
	if (output && output[0] != '/' && getcwd(abs_out, sizeof(abs_out)) &&
	    strlen(abs_out) + strlen(output) + 2 < sizeof(abs_out)) {
		strcat(abs_out, "/");
		strcat(abs_out, output);
		output = abs_out;
	}
	cli_request(&req, CRJOB__OP__SPAWN, cli->job);
	cmd[0] = prog;
	req.argv = cmd;
	req.n_argv = n;
	for (req.n_env = 0; environ[req.n_env]; req.n_env++)
		;
	req.env = environ;
	req.output = (char *)output;
	req.cwd = (char *)cwd;
	ret = cli_call_at(cli, agent, "agent", &req, CALL_TIMEOUT_MS, false, &rep);
	if (ret)
		return ret;
	if (rep->n_trees < 1) {
		fprintf(stderr, "crjob: job %s: the agent at %s named no process\n", cli->job,
			agent);
		ret = EX_FAILED;
	} else {
		printf("%u\n", rep->trees[0]->pid);
	}
	crjob__msg__free_unpacked(rep, NULL);
	return ret;
}
