/* Small I/O helpers shared by every part of crd. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

ssize_t read_all(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

ssize_t pread_all(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

int write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += n;
	}
	return 0;
}

ssize_t writev_all(int fd, const struct iovec *iov, int cnt)
{
	struct iovec local[64];
	ssize_t total = 0;
	int i = 0;

	while (i < cnt) {
		int n = cnt - i < 64 ? cnt - i : 64;
		ssize_t w, want = 0;
		int j;

		memcpy(local, iov + i, n * sizeof(*local));
		for (j = 0; j < n; j++)
			want += local[j].iov_len;
		j = 0;
		while (want) {
			w = writev(fd, local + j, n - j);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			total += w;
			want -= w;
			/* skip what was written, partially written iovecs included */
			while (j < n && (size_t)w >= local[j].iov_len) {
				w -= local[j].iov_len;
				j++;
			}
			if (j < n) {
				local[j].iov_base = (char *)local[j].iov_base + w;
				local[j].iov_len -= w;
			}
		}
		i += n;
	}
	return total;
}

ssize_t read_file(const char *path, char **bufp)
{
	size_t size = 4096, len = 0;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(size);
	while (buf) {
		ssize_t n = read(fd, buf + len, size - len - 1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			free(buf);
			close(fd);
			return n;
		}
		if (n == 0)
			break;
		len += n;
		if (len + 1 == size) {
			char *nb = realloc(buf, size * 2);

			if (!nb)
				free(buf);
			buf = nb;
			size *= 2;
		}
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[len] = '\0';
	*bufp = buf;
	return len;
}

int task_fd_dup(pid_t pid, int fd)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0), dup;

	if (pidfd < 0)
		return -errno;
	dup = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (dup < 0)
		dup = -errno;
	close(pidfd);
	return dup;
}

int parse_int(const char *s, long *val)
{
	char *end;

	errno = 0;
	*val = strtol(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	return 0;
}

int run_action_script(const char *script, const char *action, pid_t pid)
{
	char spid[16];
	int status;
	pid_t child;

	if (!script)
		return 0;
	snprintf(spid, sizeof(spid), "%d", pid);
	child = fork();
	if (child < 0)
		return -errno;
	if (child == 0) {
		sigset_t none;

		/* the restore blocks every signal; the script must not inherit that */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setenv("CRD_ACTION", action, 1);
		setenv("CRD_PID", spid, 1);
		execl(script, script, action, (char *)NULL);
		_exit(127);
	}
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("action script %s failed at %s (status %#x)\n", script, action, status);
		return -ECANCELED;
	}
	return 0;
}

void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}
