/*
 * inotify: watches on a directory and on a file, with a gap in their
 * descriptors (a watch removed in between).  After restore the same
 * descriptors report the events of the same files, and nothing else is
 * queued.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include "zdtmlib.h"

int main(void)
{
	char buf[4096] __attribute__((aligned(8)));
	struct inotify_event *ev = (void *)buf;
	int fd, wd_dir, wd_gap, wd_file, f;
	ssize_t n;

	zdtm_init("inotify_watch");
	check(!mkdir("watched", 0755), "mkdir");
	f = open("file.txt", O_WRONLY | O_CREAT, 0644);
	check(f >= 0, "create");
	close(f);
	fd = inotify_init1(IN_NONBLOCK);
	wd_dir = inotify_add_watch(fd, "watched", IN_CREATE);
	wd_gap = inotify_add_watch(fd, ".", IN_DELETE);
	wd_file = inotify_add_watch(fd, "file.txt", IN_MODIFY);
	check(fd >= 0 && wd_dir > 0 && wd_gap > 0 && wd_file > 0 &&
	      !inotify_rm_watch(fd, wd_gap), "watches");
	while (read(fd, buf, sizeof(buf)) > 0)
		;	/* the IN_IGNORED of the removed one */
	if (zdtm_corrupt())
		inotify_rm_watch(fd, wd_file);
	zdtm_ready();
	zdtm_wait();
	check(read(fd, buf, sizeof(buf)) < 0, "events queued after restore");
	close(open("watched/new", O_WRONLY | O_CREAT, 0644));
	n = read(fd, buf, sizeof(buf));
	check(n > 0 && ev->wd == wd_dir && (ev->mask & IN_CREATE) && !strcmp(ev->name, "new"),
	      "directory watch: %zd bytes, wd %d", n, n > 0 ? ev->wd : -1);
	f = open("file.txt", O_WRONLY | O_APPEND);
	check(f >= 0 && write(f, "x", 1) == 1, "write");
	close(f);
	n = read(fd, buf, sizeof(buf));
	check(n > 0 && ev->wd == wd_file && (ev->mask & IN_MODIFY), "file watch: wd %d, want %d",
	      n > 0 ? ev->wd : -1, wd_file);
	return zdtm_pass();
}
