/* The agent as crd's action script (hook.c). */
#ifndef CRJOB_AGENT_HOOK_H
#define CRJOB_AGENT_HOOK_H

/* crd runs it as `FILE ACTION`: hook mode is told by $CRJOB_HOOK_FD with $CRD_ACTION */
#define HOOK_MODE(argc, argv)							\
	(((argc) > 1 && !strcmp((argv)[1], "--hook")) ||			\
	 (getenv("CRJOB_HOOK_FD") && getenv("CRD_ACTION")))

int hook_main(const char *action_arg);

#endif
