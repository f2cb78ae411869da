/*
 * `crjob-agent --hook`: the action script crd runs (as `FILE ACTION`, with
 * CRD_ACTION and CRD_PID in the environment).  It tells the agent through
 * the inherited socket $CRJOB_HOOK_FD "ACTION PID\n" and waits for one byte:
 * 'y' lets crd go on (exit 0); anything else, or the agent gone, fails the
 * action (exit 1), and crd lets the tree run (or kills a restored one).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hook.h"

int hook_main(const char *action_arg)
{
	const char *fds = getenv("CRJOB_HOOK_FD"), *pid = getenv("CRD_PID");
	const char *action = getenv("CRD_ACTION") ?: action_arg;
	char line[128], answer = 0;
	ssize_t n;
	int fd, len;

	if (!fds || !action || !pid) {
		fprintf(stderr, "crjob-agent --hook: run by crd as its action script, with "
			"$CRJOB_HOOK_FD, $CRD_ACTION and $CRD_PID\n");
		return 1;
	}
	/* the agent gone is a "no", not a death by SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	fd = atoi(fds);
	len = snprintf(line, sizeof(line), "%s %s\n", action, pid);
	if (len >= (int)sizeof(line) || write(fd, line, len) != len) {
		fprintf(stderr, "crjob-agent --hook: %s of tree %s: the agent is gone\n", action,
			pid);
		return 1;
	}
	do
		n = read(fd, &answer, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1 && answer == 'y')
		return 0;
	fprintf(stderr, "crjob-agent --hook: %s of tree %s: %s\n", action, pid,
		n == 1 ? "the agent said no" : "the agent is gone");
	return 1;
}
