/* A private file mapping changed in memory and a shared one written through. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "zdtmlib.h"

#define LEN (64 * 4096)

static void fill_file(const char *name, char c)
{
	char buf[LEN];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);

	memset(buf, c, LEN);
	check(fd >= 0 && write(fd, buf, LEN) == LEN, "create %s", name);
	close(fd);
}

static char file_byte(const char *name, off_t off)
{
	char c = 0;
	int fd = open(name, O_RDONLY);

	check(fd >= 0 && pread(fd, &c, 1, off) == 1, "read %s", name);
	close(fd);
	return c;
}

int main(void)
{
	char *priv, *shared;
	int fd;

	zdtm_init("file_maps");
	fill_file("private.dat", 'p');
	fill_file("shared.dat", 's');
	fd = open("private.dat", O_RDONLY);
	priv = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	fd = open("shared.dat", O_RDWR);
	shared = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	check(priv != MAP_FAILED && shared != MAP_FAILED, "mmap");
	memset(priv + 4096, 'P', 4096);		/* copied on write: not in the file */
	memset(shared + 8192, 'S', 4096);	/* in the file */
	if (zdtm_corrupt())
		priv[4096] = 'x';
	zdtm_ready();
	zdtm_wait();
	check(priv[0] == 'p' && priv[4096] == 'P' && priv[8191] == 'P' && priv[8192] == 'p',
	      "private mapping contents");
	check(file_byte("private.dat", 4096) == 'p', "private change reached the file");
	check(shared[8192] == 'S' && shared[0] == 's', "shared mapping contents");
	check(file_byte("shared.dat", 8192) == 'S', "shared write missing in the file");
	shared[0] = 'T';	/* still shared with the file after restore */
	msync(shared, LEN, MS_SYNC);
	check(file_byte("shared.dat", 0) == 'T', "shared mapping no longer writes through");
	return zdtm_pass();
}
