/* crjob interval JOBID 30s|10m|2h|0 [--keep K]: periodic checkpoints (0 = off) and retention. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crjob.h"

int cmd_interval(struct cli *cli, int argc, char **argv)
{
	const char *keep = NULL;
	struct cli_arg args[] = { { "keep", true, &keep }, { 0 } };
	Crjob__Msg req, *rep;
	unsigned secs;
	char *end;
	int ret, i, n;

	/* the job, then the interval: the second word that is not an option or its value */
	for (i = 1, n = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--keep"))
			i++;
		else if (argv[i][0] != '-' && ++n == 2)
			break;
	}
	if (i >= argc || parse_duration(argv[i], &secs)) {
		fprintf(stderr, "crjob interval: want JOBID 30s|10m|2h|0 [--keep K]\n");
		return EX_USAGE;
	}
	for (; i + 1 < argc; i++)
		argv[i] = argv[i + 1];
	ret = cli_args(cli, argc - 1, argv, args, true);
	if (ret)
		return ret;
	cli_request(&req, CRJOB__OP__SET_INTERVAL, cli->job);
	req.has_interval_s = 1;
	req.interval_s = secs;
	if (keep) {
		req.has_keep = 1;
		req.keep = strtoul(keep, &end, 10);
		if (*end || !*keep) {
			fprintf(stderr, "crjob interval: bad --keep '%s'\n", keep);
			return EX_USAGE;
		}
	}
	ret = cli_call(cli, &req, CALL_TIMEOUT_MS, false, &rep);
	if (ret)
		return ret;
	if (cli->json && rep->status)
		print_status(cli, rep->status, rep->message);
	else if (rep->status)
		printf("job %s: interval %us, keep %u\n", cli->job, rep->status->interval_s,
		       rep->status->keep);
	crjob__msg__free_unpacked(rep, NULL);
	return EX_DONE;
}
