/*
 * crjob register JOBID [--node NAME,AGENT_HOST:PORT,IP[,PID[+PID...]]]...
 *                      [--step-begun J.S@NODE]... [--step-ended J.S@NODE]...
 * Add or replace nodes; tell the coordinator that srun steps began or ended
 * (the SPANK plugin: no checkpoint while one runs, coord/steps.c).
 *
 * While a checkpoint or a restart runs the coordinator takes no registration
 * (-EBUSY; a checkpoint that new trees or steps would make incomplete is
 * aborted): asked again until it is taken, for up to REGISTER_BUSY_WAIT_S.
 * Those who register are not frozen (slurmstepd, a daemon's new tree), so a
 * registration lost here would be a tree or step that no checkpoint knows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "crjob.h"

#define REGISTER_BUSY_WAIT_S	120
#define REGISTER_BUSY_POLL_US	200000

int cmd_register(struct cli *cli, int argc, char **argv)
{
	static const char *specs[CLI_MAX_MULTI], *begun[CLI_MAX_MULTI], *ended[CLI_MAX_MULTI];
	struct cli_arg args[] = { { "node", true, NULL, specs },
				  { "step-begun", true, NULL, begun },
				  { "step-ended", true, NULL, ended }, { 0 } };
	Crjob__Node **nodes;
	Crjob__Msg req, *rep;
	int i, ret;

	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	if (!args[0].nmulti && !args[1].nmulti && !args[2].nmulti) {
		fprintf(stderr, "crjob register: give nodes with --node SPEC, or steps\n");
		return EX_USAGE;
	}
	nodes = calloc(args[0].nmulti + 1, sizeof(*nodes));
	for (i = 0; nodes && i < args[0].nmulti; i++) {
		if (node_parse_spec(specs[i], &nodes[i])) {
			fprintf(stderr, "crjob register: bad --node '%s' "
				"(want NAME,AGENT_HOST:PORT,IP[,PID[+PID...]])\n", specs[i]);
			return EX_USAGE;
		}
	}
	cli_request(&req, CRJOB__OP__REGISTER, cli->job);
	req.nodes = nodes;
	req.n_nodes = args[0].nmulti;
	req.steps_begun = (char **)begun;
	req.n_steps_begun = args[1].nmulti;
	req.steps_ended = (char **)ended;
	req.n_steps_ended = args[2].nmulti;
	cli->quiet_busy = true;
	for (i = 0; ; i++) {
		ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
		if (ret != EX_FAILED || cli->error != -EBUSY)
			break;
		if ((long)i * REGISTER_BUSY_POLL_US >= REGISTER_BUSY_WAIT_S * 1000000L) {
			fprintf(stderr, "crjob: job %s: the coordinator stayed busy for %d s: "
				"not registered\n", cli->job, REGISTER_BUSY_WAIT_S);
			break;
		}
		usleep(REGISTER_BUSY_POLL_US);
	}
	if (!ret) {
		if (rep->status)
			print_status(cli, rep->status, "registered");
		crjob__msg__free_unpacked(rep, NULL);
	}
	for (i = 0; nodes && i < args[0].nmulti; i++)
		crjob__node__free_unpacked(nodes[i], NULL);
	free(nodes);
	return ret;
}
