/*
 * Files in flight: a parent sends its child, over a stream and a datagram
 * socketpair, messages carrying a pipe's read end and a memfd (which only
 * the messages hold) and a regular file it keeps open too.  After restore the
 * child receives the messages in order with their files: the pipe still
 * carries what the parent writes, the memfd has its contents, and the file
 * shares its offset with the parent's descriptor.
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "zdtmlib.h"

static void send_fds(int sk, const char *msg, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))] = { };
	struct iovec iov = { (void *)msg, strlen(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (n) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	check(sendmsg(sk, &mh, 0) == (ssize_t)strlen(msg), "sendmsg %s", msg);
}

/* one message: its text must be want, its files go to fds (count returned) */
static int recv_fds(int sk, const char *want, int *fds)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))], buf[64];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = NULL;
	ssize_t n = recvmsg(sk, &mh, MSG_DONTWAIT);
	int nfds = 0;

	check(n == (ssize_t)strlen(want) && !memcmp(buf, want, n), "expected '%s' (%zd)", want, n);
	if (mh.msg_controllen)
		c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS) {
		nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
	}
	return nfds;
}

static void child_main(int st, int dg, const char *text)
{
	char buf[64];
	int fds[4];

	zdtm_wait();
	/* a stream read runs on through "one" and stops after the message with files */
	check(recv_fds(st, "onetwo", fds) == 2, "'two' lost its files");
	check(read(fds[0], buf, 5) == 5 && !memcmp(buf, "piped", 5), "pipe contents");
	check(pread(fds[1], buf, 6, 0) == 6 && !memcmp(buf, "memfd!", 6), "memfd contents");
	check(recv_fds(st, "three", fds) == 0, "'three' came with files");
	check(recv_fds(dg, "dgram", fds) == 1, "the datagram lost its file");
	check(lseek(fds[0], 0, SEEK_CUR) == 7, "the file's offset is not shared");
	check(read(fds[0], buf, 3) == 3 && !memcmp(buf, text + 7, 3), "file contents");
	exit(0);
}

int main(void)
{
	const char *text = "0123456789abcdef";
	int st[2], dg[2], pp[2], mfd, file, status;
	pid_t child;

	zdtm_init("unix_scm");
	check(!socketpair(AF_UNIX, SOCK_STREAM, 0, st) && !socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) &&
	      !pipe(pp), "socketpair");
	mfd = memfd_create("scm", 0);
	file = open("scm.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	check(mfd >= 0 && file >= 0 && write(mfd, "memfd!", 6) == 6 &&
	      write(file, text, strlen(text)) == (ssize_t)strlen(text), "files");
	child = fork();
	if (child == 0) {
		close(st[0]);
		close(dg[0]);
		child_main(st[1], dg[1], text);
	}
	close(st[1]);
	close(dg[1]);
	send_fds(st[0], "one", NULL, 0);
	send_fds(st[0], "two", (int[]){ pp[0], mfd }, 2);
	send_fds(st[0], "three", NULL, 0);
	send_fds(dg[0], "dgram", &file, 1);
	/* only the messages hold the pipe's read end and the memfd now */
	close(pp[0]);
	close(mfd);
	zdtm_ready();
	zdtm_wait();
	check(write(pp[1], "piped", 5) == 5 && lseek(file, 7, SEEK_SET) == 7, "parent");
	if (zdtm_corrupt())
		lseek(file, 8, SEEK_SET);
	kill(child, SIGUSR2);
	check(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
	      "child: %#x", status);
	unlink("scm.dat");
	return zdtm_pass();
}
