/*
 * eventfd (with a count, semaphore mode), signalfd (with a pending signal),
 * timerfd (periodic, armed) and an epoll watching the eventfd and a pipe:
 * all keep their state across checkpoint and restore.
 */
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "zdtmlib.h"

int main(void)
{
	struct itimerspec its = { { 0, 100000000 }, { 0, 100000000 } }, cur;
	struct epoll_event evs[4];
	struct signalfd_siginfo si;
	uint64_t v, ticks;
	int efd, sfd, tfd, ep, p[2], n, i, seen_efd = 0, seen_pipe = 0;
	sigset_t mask;

	zdtm_init("fd_kinds");
	efd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK);
	tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	ep = epoll_create1(0);
	check(efd >= 0 && sfd >= 0 && tfd >= 0 && ep >= 0 && !pipe(p), "create");
	check(!timerfd_settime(tfd, 0, &its, NULL), "timerfd_settime");
	raise(SIGUSR1);
	struct epoll_event e1 = { .events = EPOLLIN, .data.u64 = 0xe1 };
	struct epoll_event e2 = { .events = EPOLLIN | EPOLLET, .data.u64 = 0x91 };
	check(!epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e1) && !epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e2),
	      "epoll_ctl");
	if (zdtm_corrupt())
		check(read(efd, &v, 8) == 8, "read");
	zdtm_ready();
	zdtm_wait();
	/* semaphore mode: three reads of 1, then nothing */
	for (i = 0; i < 3; i++)
		check(read(efd, &v, 8) == 8 && v == 1, "eventfd read %d", i);
	check(read(efd, &v, 8) < 0, "eventfd count too high");
	check(read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR1,
	      "signalfd lost its signal");
	check(!timerfd_gettime(tfd, &cur) && cur.it_interval.tv_nsec == 100000000,
	      "timerfd interval");
	check(read(tfd, &ticks, 8) == 8 && ticks >= 1, "timerfd does not fire");
	check(write(efd, &(uint64_t){ 1 }, 8) == 8 && write(p[1], "x", 1) == 1, "write");
	n = epoll_wait(ep, evs, 4, 1000);
	for (i = 0; i < n; i++) {
		seen_efd |= evs[i].data.u64 == 0xe1;
		seen_pipe |= evs[i].data.u64 == 0x91 && (evs[i].events & EPOLLIN);
	}
	check(seen_efd && seen_pipe, "epoll lost a target (%d events)", n);
	return zdtm_pass();
}
