/*
 * crjob status JOBID: phase, nodes and their trees, last generation.
 * crjob ping JOBID: round trips to the coordinator.
 */
#include <stdio.h>
#include <stdlib.h>

#include "crjob.h"

int cmd_status(struct cli *cli, int argc, char **argv)
{
	Crjob__Msg req, *rep;
	int ret;

	ret = cli_args(cli, argc, argv, NULL, true);
	if (ret)
		return ret;
	cli_request(&req, CRJOB__OP__STATUS, cli->job);
	ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
	if (ret)
		return ret;
	ret = rep->status ? EX_DONE : EX_FAILED;
	if (rep->status)
		print_status(cli, rep->status, rep->message);
	crjob__msg__free_unpacked(rep, NULL);
	return ret;
}

/* the time of empty round trips to the coordinator (connect, munge both ways, reply) */
int cmd_ping(struct cli *cli, int argc, char **argv)
{
	const char *count = NULL;
	struct cli_arg args[] = { { "count", true, &count }, { 0 } };
	double t, best = 1e9, sum = 0;
	Crjob__Msg req, *rep;
	int i, n, ret;

	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	n = count ? atoi(count) : 1;
	if (n < 1)
		return EX_USAGE;
	for (i = 0; i < n; i++) {
		cli_request(&req, CRJOB__OP__PING, cli->job);
		t = now_s();
		ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
		if (ret)
			return ret;
		t = now_s() - t;
		crjob__msg__free_unpacked(rep, NULL);
		best = t < best ? t : best;
		sum += t;
	}
	if (cli->json)
		printf("{\"job\": \"%s\", \"ok\": true, \"count\": %d, \"min_ms\": %.3f, "
		       "\"avg_ms\": %.3f}\n", cli->job, n, best * 1e3, sum / n * 1e3);
	else
		printf("job %s: %d round trips, min %.3f ms, avg %.3f ms\n", cli->job, n,
		       best * 1e3, sum / n * 1e3);
	return EX_DONE;
}
