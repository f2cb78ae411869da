/* A pipe and a FIFO between two processes with data still in their buffers. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

#define LEN 3000

int main(void)
{
	char buf[LEN], got[LEN + 10];
	int p[2], st, i, fr, fw;
	pid_t child;

	zdtm_init("pipe_data");
	for (i = 0; i < LEN; i++)
		buf[i] = 'A' + i % 26;
	check(!pipe(p), "pipe");
	check(!mkfifo("fifo", 0600), "mkfifo");
	fr = open("fifo", O_RDONLY | O_NONBLOCK);
	fw = open("fifo", O_WRONLY);
	check(fr >= 0 && fw >= 0, "open fifo");
	child = fork();
	if (child == 0) {
		close(p[1]);
		close(fw);
		zdtm_wait();
		check(read(fr, got, 100) == 9 && !memcmp(got, "fifo-data", 9), "FIFO data");
		check(read(p[0], got, LEN) == LEN && !memcmp(got, buf, LEN), "buffered data");
		check(read(p[0], got, 5) == 5 && !memcmp(got, "after", 5), "data written later");
		check(read(p[0], got, 1) == 0, "no EOF at the end");
		return 0;
	}
	close(p[0]);
	close(fr);
	check(write(p[1], buf, LEN) == LEN && write(fw, "fifo-data", 9) == 9, "write");
	if (zdtm_corrupt())
		check(write(p[1], "x", 1) == 1, "write");
	zdtm_ready();
	zdtm_wait();
	kill(child, SIGUSR2);
	check(write(p[1], "after", 5) == 5, "write after restore");
	close(p[1]);
	check(waitpid(child, &st, 0) == child && WIFEXITED(st) && !WEXITSTATUS(st),
	      "reader failed");
	return zdtm_pass();
}
