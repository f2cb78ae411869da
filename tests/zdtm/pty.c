/*
 * A pseudo-terminal pair inside the tree: the parent holds the master, its
 * child the slave in raw mode with a window size, as a launcher gives its
 * ranks ptys.  After restore the settings are those of before and data
 * flows both ways.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "zdtmlib.h"

static void expect(int fd, const char *want, const char *who)
{
	char buf[64];
	size_t got = 0, len = strlen(want);

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		check(n > 0, "%s: read failed", who);
		got += n;
	}
	check(!memcmp(buf, want, len), "%s: got '%.*s'", who, (int)len, buf);
}

int main(void)
{
	struct winsize ws = { .ws_row = 33, .ws_col = 77 }, cur;
	struct termios tio;
	int master, slave, st;
	pid_t child;

	zdtm_init("pty");
	master = posix_openpt(O_RDWR | O_NOCTTY);
	check(master >= 0 && !grantpt(master) && !unlockpt(master), "openpt");
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	check(slave >= 0 && !tcgetattr(slave, &tio), "open slave");
	cfmakeraw(&tio);
	check(!tcsetattr(slave, TCSANOW, &tio) && !ioctl(slave, TIOCSWINSZ, &ws), "settings");
	child = fork();
	if (child == 0) {
		close(master);
		zdtm_wait();
		check(!tcgetattr(slave, &tio) && !(tio.c_lflag & (ICANON | ECHO)),
		      "the slave is no longer raw");
		check(!ioctl(slave, TIOCGWINSZ, &cur) && cur.ws_row == 33 && cur.ws_col == 77,
		      "window size %dx%d", cur.ws_row, cur.ws_col);
		check(write(slave, "ping", 4) == 4, "write");
		expect(slave, "pong", "child");
		return 0;
	}
	close(slave);
	if (zdtm_corrupt()) {
		ws.ws_row = 1;
		ioctl(master, TIOCSWINSZ, &ws);
	}
	zdtm_ready();
	zdtm_wait();
	kill(child, SIGUSR2);
	expect(master, "ping", "parent");
	check(write(master, "pong", 4) == 4, "write");
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st), "child: %#x", st);
	return zdtm_pass();
}
