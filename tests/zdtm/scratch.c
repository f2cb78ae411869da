/*
 * Files in node-local scratch: one in /dev/shm, mapped shared, and one in
 * the test's directory (dumped with --capture-path), open at an offset.  The
 * runner deletes both after the dump, as on another node; restore recreates
 * them from the image.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "zdtmlib.h"

#define LEN (1 << 20)

int main(void)
{
	char shm[64], buf[16];
	int fd, sfd, i;
	unsigned char *m;

	zdtm_init("scratch");
	snprintf(shm, sizeof(shm), "/dev/shm/crd-zdtm-scratch-%d", getpid());
	fd = open("scratch.dat", O_RDWR | O_CREAT | O_TRUNC, 0640);
	sfd = open(shm, O_RDWR | O_CREAT | O_TRUNC, 0600);
	check(fd >= 0 && sfd >= 0 && !ftruncate(sfd, LEN), "create");
	check(write(fd, "0123456789abcdef", 16) == 16 && lseek(fd, 10, SEEK_SET) == 10, "write");
	m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	check(m != MAP_FAILED, "mmap");
	close(sfd);
	for (i = 0; i < LEN; i += 4096)
		m[i] = i / 4096 + 1;
	if (zdtm_corrupt())
		m[4096] = 0;
	zdtm_ready();
	zdtm_wait();
	check(lseek(fd, 0, SEEK_CUR) == 10 && read(fd, buf, 6) == 6 && !memcmp(buf, "abcdef", 6),
	      "scratch.dat offset or contents");
	for (i = 0; i < LEN; i += 4096)
		check(m[i] == (unsigned char)(i / 4096 + 1), "shm page %d", i / 4096);
	m[0] = 0x42;	/* still the file's memory */
	sfd = open(shm, O_RDONLY);
	check(sfd >= 0 && pread(sfd, buf, 1, 0) == 1 && buf[0] == 0x42, "mapping and file differ");
	close(sfd);
	unlink(shm);
	return zdtm_pass();
}
