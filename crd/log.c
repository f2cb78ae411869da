/*
 * Logging.  The level and the descriptor are process-wide on purpose: every
 * process of a restore (the tree's helpers included) logs to the same place,
 * and the restore moves the descriptor above the fds it recreates.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"

static int log_level = LOG_WARN;
static int log_fd = STDERR_FILENO;

void log_init(int level, int fd)
{
	log_level = level;
	log_fd = fd;
}

int log_get_fd(void)
{
	return log_fd;
}

/* Move the log descriptor to minfd or above; returns the new fd or -errno. */
int log_move_fd(int minfd)
{
	int fd = fcntl(log_fd, F_DUPFD_CLOEXEC, minfd);

	if (fd < 0)
		return -errno;
	log_fd = fd;
	return fd;
}

void log_printf(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n, saved = errno;

	if (level > log_level)
		return;
	/* crd, or crjob-coord and crjob, which log through this too */
	n = snprintf(buf, sizeof(buf), "%s[%d]: ", program_invocation_short_name, getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf))
		n = sizeof(buf);
	/* a failed log write has nowhere left to be reported */
	n = write(log_fd, buf, n);
	errno = saved;
}
