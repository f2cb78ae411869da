/* crjob history JOBID: the job's generations with sizes and durations. */
#include "crjob.h"

int cmd_history(struct cli *cli, int argc, char **argv)
{
	Crjob__Msg req, *rep;
	int ret;

	ret = cli_args(cli, argc, argv, NULL, true);
	if (ret)
		return ret;
	cli_request(&req, CRJOB__OP__HISTORY, cli->job);
	ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
	if (ret)
		return ret;
	print_gens(cli, (const Crjob__Generation *const *)rep->gens, rep->n_gens);
	crjob__msg__free_unpacked(rep, NULL);
	return EX_DONE;
}
