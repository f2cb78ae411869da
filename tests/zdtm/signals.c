/* Signal handlers, blocked signals and pending ones (thread and process queues). */
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "zdtmlib.h"

static volatile int got_int, got_rt, rt_value;

static void on_int(int sig)
{
	got_int++;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	got_rt++;
	rt_value = si->si_value.sival_int;
}

int main(void)
{
	struct sigaction sa, old;
	sigset_t block, pend, cur;
	union sigval v = { .sival_int = 42 };

	zdtm_init("signals");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_int;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGHUP);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGRTMIN + 2, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGRTMIN + 2);
	sigaddset(&block, SIGPIPE);
	sigprocmask(SIG_BLOCK, &block, NULL);
	raise(SIGINT);				/* pending on the thread */
	sigqueue(getpid(), SIGRTMIN + 2, v);	/* pending on the process, with a value */
	if (zdtm_corrupt())
		signal(SIGHUP, SIG_DFL);
	zdtm_ready();
	zdtm_wait();
	sigaction(SIGHUP, NULL, &old);
	check(old.sa_handler == SIG_IGN, "SIGHUP no longer ignored");
	sigaction(SIGINT, NULL, &old);
	check(old.sa_handler == on_int && (old.sa_flags & SA_RESTART) &&
	      sigismember(&old.sa_mask, SIGHUP), "SIGINT action");
	sigprocmask(SIG_SETMASK, NULL, &cur);
	check(sigismember(&cur, SIGINT) && sigismember(&cur, SIGPIPE) &&
	      !sigismember(&cur, SIGTERM), "blocked mask");
	sigpending(&pend);
	check(sigismember(&pend, SIGINT) && sigismember(&pend, SIGRTMIN + 2),
	      "pending signals lost");
	check(!got_int && !got_rt, "a blocked signal was delivered");
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	check(got_int == 1 && got_rt == 1 && rt_value == 42, "pending signals: %d %d %d",
	      got_int, got_rt, rt_value);
	return zdtm_pass();
}
