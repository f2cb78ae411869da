/*
 * Periodic checkpoints: every interval_s seconds, unless an operation is in
 * progress then (that tick is skipped, not queued: the next comes one
 * interval later).  Interval 0 turns them off.
 */
#include <errno.h>
#include <event2/event.h>
#include <string.h>

#include "coord.h"
#include "log.h"

static void arm(struct coord *co)
{
	struct timeval tv = { co->interval_s, 0 };

	evtimer_del(co->tick);
	if (co->interval_s)
		evtimer_add(co->tick, &tv);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct coord *co = arg;
	int ret;

	arm(co);
	if (co->op) {
		pr_info("job %s: periodic checkpoint skipped: a %s is in progress\n", co->job,
			co->op->name);
		return;
	}
	co->caller.c = NULL;
	ret = ckpt_start(co, false);
	if (ret == -EOPNOTSUPP) {
		char what[200];

		steps_why(co, what, sizeof(what), false);
		pr_info("job %s: periodic checkpoint skipped: %s\n", co->job, what);
	} else if (ret && ret != -ESRCH)
		pr_err("job %s: periodic checkpoint not started: %s\n", co->job, strerror(-ret));
}

int periodic_init(struct coord *co)
{
	co->tick = evtimer_new(co->base, tick, co);
	if (!co->tick)
		return -ENOMEM;
	arm(co);
	return 0;
}

void periodic_set(struct coord *co, uint32_t interval_s)
{
	co->interval_s = interval_s;
	arm(co);
}

void periodic_free(struct coord *co)
{
	if (co->tick)
		event_free(co->tick);
	co->tick = NULL;
}
