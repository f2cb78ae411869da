/* Open files: offsets, O_APPEND, a shared description, a dup, /dev/null. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "zdtmlib.h"

int main(void)
{
	char buf[2000];
	int fd, dupfd, app, nul, ro;

	zdtm_init("files");
	memset(buf, 'a', sizeof(buf));
	fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	app = open("append.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	nul = open("/dev/null", O_WRONLY);
	check(fd >= 0 && app >= 0 && nul >= 0, "open");
	check(write(fd, buf, 1000) == 1000 && write(app, buf, 50) == 50, "write");
	check(lseek(fd, 123, SEEK_SET) == 123, "lseek");
	dupfd = dup(fd);
	ro = open("data.txt", O_RDONLY | O_CLOEXEC);
	check(lseek(ro, 7, SEEK_SET) == 7, "lseek ro");
	if (zdtm_corrupt())
		lseek(fd, 124, SEEK_SET);
	zdtm_ready();
	zdtm_wait();
	check(lseek(fd, 0, SEEK_CUR) == 123, "offset of data.txt");
	check(lseek(dupfd, 0, SEEK_CUR) == 123, "offset of the dup");
	check(lseek(ro, 0, SEEK_CUR) == 7, "offset of the second description");
	check(fcntl(ro, F_GETFD) == FD_CLOEXEC && fcntl(fd, F_GETFD) == 0, "close-on-exec flags");
	check((fcntl(app, F_GETFL) & O_APPEND), "O_APPEND lost");
	check(write(app, "zz", 2) == 2 && lseek(app, 0, SEEK_CUR) == 52, "append position");
	check(lseek(dupfd, 0, SEEK_SET) == 0 && lseek(fd, 0, SEEK_CUR) == 0,
	      "dup no longer shares the offset");
	check(read(ro, buf, 10) == 10 && !memcmp(buf, "aaaaaaaaaa", 10), "file contents");
	check(write(nul, "x", 1) == 1, "/dev/null");
	return zdtm_pass();
}
