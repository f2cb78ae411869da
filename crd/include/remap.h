/* --remap-ip: see crd/remap.c */
#ifndef CRD_REMAP_H
#define CRD_REMAP_H

#include "crd.h"
#include "crd.pb-c.h"

/* Rewrite the TCP and UDP endpoints of inv as o->remap says. */
void remap_inventory(const struct restore_opts *o, Crd__Inventory *inv);

#endif
