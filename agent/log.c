/*
 * The agent's log: one timestamped line per event on stderr, which main()
 * points at --log FILE.  librpc logs on the same stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

void agent_log_init(int fd)
{
	if (fd != STDERR_FILENO)
		dup2(fd, STDERR_FILENO);
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void alog(const char *fmt, ...)
{
	char ts[32];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;

	strftime(ts, sizeof(ts), "%F %T", localtime_r(&now, &tm));
	fprintf(stderr, "%s crjob-agent[%d]: ", ts, getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}
