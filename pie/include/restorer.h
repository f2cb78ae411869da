/*
 * Interface between crd restore and the restorer blob (pie/restorer.c).
 * Filled in by the restore helper.
 */
#ifndef CRD_RESTORER_H
#define CRD_RESTORER_H

#endif
