/* SPDX-License-Identifier: Apache-2.0 */
/* kiln's own reader of /etc/passwd and /etc/group *contents*, for users inside a root file system.
 * Never NSS, never getpwnam(): those read the host's databases (and load NSS modules into a root
 * service). Pure functions of a buffer and its length; the caller reads the files with
 * kiln_rootfs_read_file() and its size bound.
 *
 * The format is the files backend's: one entry a line, fields separated by ':'. Blank lines, lines
 * starting with '#', NIS compat lines ('+'/'-'), lines with too few fields or a bad number, lines
 * containing a NUL byte and lines longer than KILN_PASSWD_MAX_LINE are skipped. The first matching
 * line wins. */
#pragma once

#include <glib.h>

#include "base/errors.h"

#define KILN_PASSWD_MAX_LINE 65536
/* The kernel's NGROUPS_MAX: more supplementary groups cannot be set anyway. */
#define KILN_MAX_ADDITIONAL_GIDS 65536

typedef struct KilnPasswdEntry {
        char *name;
        guint32 uid;
        guint32 gid;
        char *home; /* "/" when the field is missing or empty */
} KilnPasswdEntry;

void kiln_passwd_entry_clear(KilnPasswdEntry *entry);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnPasswdEntry, kiln_passwd_entry_clear)

/* Decimal digits only (no sign, no space), at most 4294967295. */
gboolean kiln_parse_uint32(const char *s, gsize n, guint32 *value);
/* A uid or gid: the same, at most 4294967294 ((uid_t)-1 means "no change" to the kernel). */
gboolean kiln_parse_id(const char *s, gsize n, guint32 *id);

/* Fill @entry from the first line of the passwd content @buf (@len bytes) that matches. */
gboolean kiln_passwd_find_by_name(const char *buf, gsize len, const char *name, KilnPasswdEntry *entry);
gboolean kiln_passwd_find_by_uid(const char *buf, gsize len, guint32 uid, KilnPasswdEntry *entry);
gboolean kiln_group_find_by_name(const char *buf, gsize len, const char *name, guint32 *gid);
/* Appends to @gids (of guint32) the gid of every group whose member list names @user, skipping
 * gids already there, up to KILN_MAX_ADDITIONAL_GIDS in all. */
void kiln_group_add_memberships(const char *buf, gsize len, const char *user, GArray *gids);

/* Resolves @spec, "user[:group]" (names or numbers; empty: root), against the passwd and group
 * contents (either may be NULL: a root file system without the file).
 * - a numeric user not in passwd is allowed: gid 0 (unless a group is given), home "/";
 * - a user or group name that is not found is an InvalidArgument error naming it;
 * - *additional_gids (of guint32) always starts with the primary gid; without an explicit group it
 *   also holds every group listing the user by name (as runc and buildah do).
 * *home is the passwd home directory, or "/". */
gboolean kiln_resolve_user(const char *spec, const char *passwd, gsize passwd_len, const char *group,
                           gsize group_len, guint32 *uid, guint32 *gid, GArray **additional_gids,
                           char **home, GError **error);

/* ---- supplementary groups (group_add: the run option and the builder setting, --group-add) ---- */

/* The caller's own supplementary groups instead of a group of the image (uid 0's runs without a user
 * namespace only: run-volumes.h resolves it). */
#define KILN_GROUP_ADD_KEEP_GROUPS "keep-groups"

/* One group_add entry: a gid, a group name (letters, digits, '_', '.', '-'; what /etc/group can hold),
 * or "keep-groups". InvalidArgument naming @arg. */
gboolean kiln_validate_group_add(const char *arg, const char *value, GError **error);
/* Appends the gid of @value (a gid, or a name looked up in the group content @group, which may be
 * NULL) to @gids unless it is there already. A name not found, or "keep-groups", is InvalidArgument
 * naming @arg. */
gboolean kiln_group_add_resolve(const char *group, gsize group_len, const char *arg, const char *value,
                                GArray *gids, GError **error);
