/* Logging: one line per event, with the context of whoever logs it. */
#ifndef CRD_LOG_H
#define CRD_LOG_H

#include <errno.h>
#include <string.h>

enum {
	LOG_ERROR = 1,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

void log_init(int level, int fd);
int log_get_fd(void);
int log_move_fd(int minfd);
void log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_err(fmt, ...)	log_printf(LOG_ERROR, "Error: " fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...)	log_printf(LOG_WARN, "Warn: " fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...)	log_printf(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...)	log_printf(LOG_DEBUG, fmt, ##__VA_ARGS__)
/* pr_perror: like pr_err, with errno's text appended */
#define pr_perror(fmt, ...)	pr_err(fmt ": %s\n", ##__VA_ARGS__, strerror(errno))

#endif
