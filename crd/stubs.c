/* Temporary: entry points not written yet. */
#include <errno.h>
#include "crd.h"
#include "log.h"

int cr_check(void) { pr_err("check: not implemented\n"); return -ENOSYS; }
int cr_show(const char *p) { pr_err("show: not implemented\n"); return -ENOSYS; }
