/* An armed itimer and a POSIX timer keep firing after restore. */
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "zdtmlib.h"

static volatile int alarms, ticks;

static void on_alrm(int sig)
{
	alarms++;
}

static void on_tick(int sig)
{
	ticks++;
}

int main(void)
{
	struct itimerval iv = { { 0, 100000 }, { 0, 100000 } }, cur;
	struct itimerspec its = { { 0, 50000000 }, { 0, 50000000 } }, tcur;
	struct sigevent sev;
	timer_t t;
	int a0, t0;

	zdtm_init("timers");
	signal(SIGALRM, on_alrm);
	signal(SIGRTMIN + 1, on_tick);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 1;
	check(!timer_create(CLOCK_MONOTONIC, &sev, &t), "timer_create");
	check(!timer_settime(t, 0, &its, NULL), "timer_settime");
	check(!setitimer(ITIMER_REAL, &iv, NULL), "setitimer");
	if (zdtm_corrupt())
		timer_delete(t);
	zdtm_ready();
	zdtm_wait();
	check(!getitimer(ITIMER_REAL, &cur) && cur.it_interval.tv_usec == 100000,
	      "itimer interval lost");
	check(!timer_gettime(t, &tcur) && tcur.it_interval.tv_nsec == 50000000,
	      "POSIX timer interval lost");
	a0 = alarms;
	t0 = ticks;
	/* both keep firing: a second of sleeping sees several of each */
	for (int i = 0; i < 100 && (alarms - a0 < 3 || ticks - t0 < 3); i++)
		usleep(20000);
	check(alarms - a0 >= 3, "itimer stopped firing (%d)", alarms - a0);
	check(ticks - t0 >= 3, "POSIX timer stopped firing (%d)", ticks - t0);
	return zdtm_pass();
}
