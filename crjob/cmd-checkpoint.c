/* crjob checkpoint JOBID [--stop]: a checkpoint now; --stop kills the job after the commit. */
#include "crjob.h"

int cmd_checkpoint(struct cli *cli, int argc, char **argv)
{
	const char *stop = NULL;
	struct cli_arg args[] = { { "stop", false, &stop }, { 0 } };
	Crjob__Msg req, *rep;
	int ret;

	ret = cli_args(cli, argc, argv, args, true);
	if (ret)
		return ret;
	cli_request(&req, CRJOB__OP__CHECKPOINT, cli->job);
	req.has_stop = 1;
	req.stop = stop != NULL;
	ret = cli_call(cli, &req, OP_TIMEOUT_MS, true, &rep);
	if (ret)
		return ret;
	print_result(cli, rep);
	crjob__msg__free_unpacked(rep, NULL);
	return EX_DONE;
}
