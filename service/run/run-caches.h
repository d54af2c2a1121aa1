/* SPDX-License-Identifier: Apache-2.0 */
/* The caches of `--mount type=cache` (run parity): STATE/caches/UID/ID, one directory per caller and
 * id, made by kilnd the first time a run of that caller names the id, kept across runs and builders,
 * never seen by another user's runs, removed by Manager.RemoveCaches (`kiln prune --cache`).
 *
 * STATE/caches and STATE/caches/UID are root's, 0700: nobody reaches a cache on the host but through
 * kilnd. The cache itself belongs to the ids it was made for (the run's user namespace's host ids of
 * uid=, gid=), so that the run's user owns it inside. kilnd never follows a path inside a cache but
 * `source=`, resolved with the cache as its root.
 *
 * Which caches are in use is kept in memory (kilnd runs them all), in a KilnCacheRegistry the Manager
 * owns and hands each run (KilnRunInput): sharing=locked refuses a second run (Busy), sharing=private
 * gives it a fresh directory of its own instead. */
#pragma once

#include "run/run-volumes.h"

typedef struct KilnCacheLease KilnCacheLease;
typedef struct KilnCacheRegistry KilnCacheRegistry;

/* The caches under @state_dir and which of them runs use. Outlives every lease taken from it. */
KilnCacheRegistry *kiln_cache_registry_new(const char *state_dir);
void kiln_cache_registry_free(KilnCacheRegistry *registry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnCacheRegistry, kiln_cache_registry_free)

/* Bounds the caches by [Limits] StorageBytesPerUser (G_MAXUINT64: not bounded): a run of a uid other
 * than 0 may use a cache only while his caches (as last measured: after each cache's last run ends, on a
 * worker thread, and once now for all) and @other_bytes (his layers and images) are within it. */
typedef guint64 (*KilnCacheOtherBytesFunc)(uid_t owner, gpointer data);
void kiln_cache_registry_set_limit(KilnCacheRegistry *registry, guint64 bytes_per_user,
                                   KilnCacheOtherBytesFunc other_bytes, gpointer data);
/* The bytes of @owner's caches as last measured (G_MAXUINT64 if one could not be). */
guint64 kiln_cache_registry_user_bytes(KilnCacheRegistry *registry, uid_t owner);

/* Opens the cache of @v for a run (making it, owned by @host_uid:@host_gid with @v's mode, the first
 * time) and, with @v->cache_source, the directory inside it (made the same way when missing); takes a
 * lease on it. *@ret_private: sharing=private found the cache in use, the caller makes a fresh
 * directory instead and the returned descriptor is -1. Returns an O_PATH descriptor of the directory,
 * or -1 with @error (Busy for sharing=locked, InvalidArgument naming @v->arg for a bad source,
 * LimitExceeded past StorageBytesPerUser; nothing is made then). */
int kiln_run_cache_open(KilnCacheRegistry *registry, const KilnRunVolume *v, uid_t host_uid, gid_t host_gid,
                        gboolean *ret_private, KilnCacheLease **ret_lease, GError **error);
void kiln_cache_lease_free(KilnCacheLease *lease);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnCacheLease, kiln_cache_lease_free)

/* Removes @owner's caches named in @ids (NULL or empty: all of them), but none a run uses now.
 * *@ret_removed: the ids removed; *@ret_busy: the ids in use, kept. An id that is not a name is
 * InvalidArgument naming "ids"; one that does not exist is skipped. */
gboolean kiln_run_caches_remove(KilnCacheRegistry *registry, uid_t owner, const char *const *ids,
                                char ***ret_removed, char ***ret_busy, GError **error);
