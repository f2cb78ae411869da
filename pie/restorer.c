/* The restorer blob (placeholder until the restorer lands). */
#include "restorer.h"

__attribute__((section(".text.entry"), used, noreturn))
void restorer_entry(void *args)
{
	for (;;)
		;
}
