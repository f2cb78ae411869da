/* crjob shutdown JOBID: the coordinator exits (the job is over). */
#include <stdio.h>

#include "crjob.h"

int cmd_shutdown(struct cli *cli, int argc, char **argv)
{
	Crjob__Msg req, *rep;
	int ret;

	ret = cli_args(cli, argc, argv, NULL, true);
	if (ret)
		return ret;
	cli_request(&req, CRJOB__OP__SHUTDOWN, cli->job);
	ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
	if (ret)
		return ret;
	if (cli->json)
		printf("{\"job\": \"%s\", \"ok\": true}\n", cli->job);
	else
		printf("job %s: coordinator shut down\n", cli->job);
	crjob__msg__free_unpacked(rep, NULL);
	return EX_DONE;
}
