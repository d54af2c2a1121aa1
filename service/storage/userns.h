/* SPDX-License-Identifier: Apache-2.0 */
/* ID mappings for user namespaces (userns=auto).
 *
 * A run's container root is its builder owner's uid (gid: the owner's primary gid); container ids
 * 1...N are the owner's ranges in /etc/subuid and /etc/subgid. An owner without an entry in a file
 * gets one slot of [UserNamespace] RangeSize ids from the pool of kiln.conf instead: the first slot
 * that overlaps no range of either file, no other allotment, and no uid or gid of an existing account.
 * Allotments are saved before they are used, kept across restarts and never given to another uid,
 * so ids that once belonged to a user's files never become someone else's.
 *
 * The parsers and the checks are pure functions of their input; kiln_userns_mappings() does the
 * reading (the files, the account databases) around them. Every map is checked before it is returned. */
#pragma once

#include <glib.h>

#include "base/config.h"
#include "base/errors.h"
#include "spec/spec.h"

/* The kernel accepts at most this many lines in /proc/PID/uid_map and gid_map. */
#define KILN_IDMAP_MAX_LINES 340
/* /etc/subuid and /etc/subgid are small; a larger file is refused rather than read. */
#define KILN_SUBID_FILE_MAX (1024 * 1024)

/* Ids [start, start + count). */
typedef struct KilnIdRange {
        guint32 start;
        guint32 count;
} KilnIdRange;

/* The ranges (a GArray of KilnIdRange) of one account in the contents of a subuid or subgid file:
 * lines "NAME_OR_UID:START:COUNT". An entry matches by user name (@user, may be NULL) or by decimal
 * uid. Comments (#) and blank lines are skipped; so are malformed lines (reported once with g_debug),
 * ranges of 0 ids and ranges that would reach id 4294967295 ((uid_t)-1, which the kernel refuses). */
GArray *kiln_subid_ranges_for(const char *contents, gsize len, const char *user, guint32 uid);
/* Every range in the file, of any account: the pool must stay clear of them. A range reaching past
 * the last valid id is cut there rather than skipped. */
GArray *kiln_subid_ranges_all(const char *contents, gsize len);

/* The first slot [pool_start + k * range_size, + range_size) of the pool that overlaps none of
 * @taken; FALSE when every slot does. Pure: the heart of the allotment. */
gboolean kiln_id_pool_pick(guint32 pool_start, guint32 pool_size, guint32 range_size,
                           const KilnIdRange *taken, gsize n_taken, guint32 *ret_start);

/* The pool, its allotments (loaded from and saved to one file), and the [UserNamespace] settings. */
typedef struct KilnUserns KilnUserns;

/* Loads the allotments file @allotments_path (missing: no allotments yet; corrupt: an error naming
 * the file and the line). The settings are copied from @config. */
KilnUserns *kiln_userns_new(const KilnConfig *config, const char *allotments_path, GError **error);
void kiln_userns_free(KilnUserns *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnUserns, kiln_userns_free)

/* The uid and gid maps (GArrays of KilnIdMapping) of a user namespace for @owner, whose primary gid
 * is @owner_gid:
 *   uid map: {0, owner, 1}, then {1, r0.start, r0.count}, {1 + r0.count, r1.start, r1.count}, ... for
 *            the owner's ranges in SubUidFile, or its pool allotment when it has none;
 *   gid map: {0, owner_gid, 1}, then the same from SubGidFile or the pool.
 * The subid files are read again on every call (they change). An allotment is made, when needed, and
 * saved before it is returned. Errors: LimitExceeded when the pool is exhausted, InvalidArgument when
 * the owner has no entry and the pool is disabled, or when a map fails kiln_idmap_check(). */
gboolean kiln_userns_mappings(KilnUserns *u, guint32 owner, guint32 owner_gid, GArray **ret_uid_map,
                              GArray **ret_gid_map, GError **error);

/* Checks one map before use, and says which line is wrong and why (InvalidArgument naming @arg,
 * e.g. "uid map"):
 *   - 1 to KILN_IDMAP_MAX_LINES lines, each of at least one id;
 *   - no container or host range reaching id 4294967295;
 *   - container ranges pairwise disjoint, host ranges pairwise disjoint;
 *   - host id 0 only when @owner is 0;
 *   - each host range is exactly @owner (pass the owner's gid for a gid map) or lies inside one of
 *     @allowed (the owner's subordinate or pool ranges). */
gboolean kiln_idmap_check(const char *arg, const KilnIdMapping *map, gsize n, guint32 owner,
                          const KilnIdRange *allowed, gsize n_allowed, GError **error);

/* The host id that @container_id maps to; FALSE when the map does not cover it. For the owners of
 * files kilnd creates inside a root file system. */
gboolean kiln_idmap_to_host(const KilnIdMapping *map, gsize n, guint32 container_id, guint32 *ret_host_id);

/* A user namespace's maps (arrays of KilnIdMapping): container root is the builder's owner, 1…N its
 * subordinate ids (kiln_userns_mappings()). */
typedef struct {
        GArray *uid_map;
        GArray *gid_map;
} KilnIdMaps;
void kiln_id_maps_clear(KilnIdMaps *maps);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KilnIdMaps, kiln_id_maps_clear)
