/* SPDX-License-Identifier: Apache-2.0 */
/* Pieces of the spec generator shared between spec.c, spec-process.c and spec-mounts.c. */
#pragma once

#include "spec/spec.h"

/* spec-process.c */

/* The hostname the spec gets: NULL unless the UTS namespace is private. */
gboolean kiln_spec_resolve_hostname(const KilnSpecInput *input, char **hostname, GError **error);
/* The process environment, as "NAME=VALUE" strings. */
GPtrArray *kiln_spec_build_env(const KilnSpecInput *input, GError **error);
/* The bounding set as a bit mask (bit N: capability N). */
gboolean kiln_spec_capability_set(const KilnSpecInput *input, guint64 *set, GError **error);
/* "CAP_CHOWN" for 0, ...; NULL for a number libcap does not name. */
char *kiln_spec_capability_name(int cap);
#define KILN_N_RLIMITS 16
typedef struct KilnRlimits {
        gboolean set[KILN_N_RLIMITS]; /* in the kernel's order: RLIMIT_CPU, RLIMIT_FSIZE, ... */
        guint64 soft[KILN_N_RLIMITS];
        guint64 hard[KILN_N_RLIMITS];
} KilnRlimits;
/* The rlimits of @ulimits ("name=soft[:hard]", later ones win) over the default. */
gboolean kiln_spec_parse_rlimits(const char *const *ulimits, KilnRlimits *rlimits, GError **error);
/* Adds the "rlimits" member to the process object being built. */
void kiln_spec_add_rlimits(JsonBuilder *b, const KilnRlimits *rlimits);

/* spec-mounts.c */

typedef struct KilnSpecMount {
        char *destination;
        char *type;
        char *source;
        GPtrArray *options; /* of char *, owned */
} KilnSpecMount;

void kiln_spec_mount_free(KilnSpecMount *mount);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnSpecMount, kiln_spec_mount_free)

/* @path made canonical (no "//", ".", trailing "/"); refuses relative paths, ".." and control
 * characters. */
char *kiln_spec_normalize_path(const char *arg, const char *path, GError **error);

/* The spec's mounts, in order: the standard ones for this combination of namespaces, the
 * generated files, the caller's mounts (see KilnMount). */
GPtrArray *kiln_spec_build_mounts(const KilnSpecInput *input, gboolean userns, gboolean devpts_gid5,
                                  GError **error);
