/* crjob register JOBID --node NAME,AGENT_HOST:PORT,IP[,PID[+PID...]]...: add or replace nodes. */
#include <stdio.h>
#include <stdlib.h>

#include "crjob.h"

int cmd_register(struct cli *cli, int argc, char **argv)
{
	const char *specs[CLI_MAX_MULTI];
	struct cli_arg args[] = { { "node", true, NULL, specs }, { 0 } };
	Crjob__Node **nodes;
	Crjob__Msg req, *rep;
	int i, ret;

	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	if (!args[0].nmulti) {
		fprintf(stderr, "crjob register: give nodes with --node SPEC\n");
		return EX_USAGE;
	}
	nodes = calloc(args[0].nmulti, sizeof(*nodes));
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
	ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
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
