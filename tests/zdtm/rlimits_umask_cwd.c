/* rlimits, umask, cwd and the process name. */
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "zdtmlib.h"

int main(void)
{
	struct rlimit nofile = { 512, 1000 }, core = { 0, 4096 }, rl;
	char cwd[4096], want[4096], name[16];

	zdtm_init("rlimits_umask_cwd");
	check(!setrlimit(RLIMIT_NOFILE, &nofile) && !setrlimit(RLIMIT_CORE, &core), "setrlimit");
	umask(027);
	mkdir("sub", 0755);
	prctl(PR_SET_NAME, "zdtm-named");
	if (zdtm_corrupt())
		umask(022);
	zdtm_ready();
	check(!chdir("sub") && getcwd(want, sizeof(want)), "chdir");
	zdtm_wait();
	check(!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur == 512 && rl.rlim_max == 1000,
	      "RLIMIT_NOFILE %lu/%lu", rl.rlim_cur, rl.rlim_max);
	check(!getrlimit(RLIMIT_CORE, &rl) && rl.rlim_cur == 0 && rl.rlim_max == 4096,
	      "RLIMIT_CORE");
	check(umask(0) == 027, "umask");
	check(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, want), "cwd %s, want %s", cwd, want);
	prctl(PR_GET_NAME, name);
	check(!strcmp(name, "zdtm-named"), "comm %s", name);
	return zdtm_pass();
}
