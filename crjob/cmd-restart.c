/*
 * crjob restart JOBID --node NAME,AGENT,IP [--node ...] [--generation N] [--pidns]:
 * the job's last (or given) generation on these nodes, in the order of the
 * generation's nodes; --pidns restores each tree in a new pid namespace (its
 * pids may be taken on the new node).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crjob.h"

int cmd_restart(struct cli *cli, int argc, char **argv)
{
	const char *specs[CLI_MAX_MULTI], *gen = NULL, *pidns = NULL;
	struct cli_arg args[] = { { "node", true, NULL, specs }, { "generation", true, &gen },
				  { "pidns", false, &pidns }, { 0 } };
	Crjob__Node **nodes;
	Crjob__Msg req, *rep;
	int i, ret;
	char *end;

	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	if (!args[0].nmulti) {
		fprintf(stderr, "crjob restart: give the new nodes with --node NAME,AGENT,IP\n");
		return EX_USAGE;
	}
	cli_request(&req, CRJOB__OP__RESTART, cli->job);
	req.has_pidns = pidns != NULL;
	req.pidns = pidns != NULL;
	if (gen) {
		req.has_generation = 1;
		req.generation = strtoull(gen, &end, 10);
		if (*end || !*gen) {
			fprintf(stderr, "crjob restart: bad --generation '%s'\n", gen);
			return EX_USAGE;
		}
	}
	nodes = calloc(args[0].nmulti, sizeof(*nodes));
	for (i = 0; nodes && i < args[0].nmulti; i++) {
		if (node_parse_spec(specs[i], &nodes[i]) || nodes[i]->n_trees) {
			fprintf(stderr, "crjob restart: bad --node '%s' "
				"(want NAME,AGENT_HOST:PORT,IP)\n", specs[i]);
			return EX_USAGE;
		}
	}
	req.nodes = nodes;
	req.n_nodes = args[0].nmulti;
	ret = cli_call(cli, &req, OP_TIMEOUT_MS, true, &rep);
	if (!ret) {
		print_result(cli, rep);
		crjob__msg__free_unpacked(rep, NULL);
	}
	for (i = 0; nodes && i < args[0].nmulti; i++)
		crjob__node__free_unpacked(nodes[i], NULL);
	free(nodes);
	return ret;
}
