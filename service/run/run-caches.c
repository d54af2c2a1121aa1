/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/rootfs.h"
#include "base/validate.h"
#include "run/run-caches.h"

/* The caches runs use now: "UID/ID" → CacheUse. kilnd prepares and ends runs on its one main-loop
 * thread, so a plain table is enough. */
typedef struct {
        guint users;
        gboolean locked;
} CacheUse;

struct KilnCacheRegistry {
        char *state_dir;
        GHashTable *in_use;
};

struct KilnCacheLease {
        KilnCacheRegistry *registry;
        char *key;
};

KilnCacheRegistry *kiln_cache_registry_new(const char *state_dir)
{
        KilnCacheRegistry *r = g_new0(KilnCacheRegistry, 1);

        r->state_dir = g_strdup(state_dir);
        r->in_use = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        return r;
}

void kiln_cache_registry_free(KilnCacheRegistry *r)
{
        if (!r)
                return;
        g_hash_table_unref(r->in_use);
        g_free(r->state_dir);
        g_free(r);
}

static char *cache_key(uid_t owner, const char *id)
{
        return g_strdup_printf("%u/%s", (unsigned)owner, id);
}

static CacheUse *cache_use(KilnCacheRegistry *r, const char *key)
{
        return g_hash_table_lookup(r->in_use, key);
}

void kiln_cache_lease_free(KilnCacheLease *lease)
{
        CacheUse *use;

        if (!lease)
                return;
        use = cache_use(lease->registry, lease->key);
        if (use && --use->users == 0)
                g_hash_table_remove(lease->registry->in_use, lease->key);
        g_free(lease->key);
        g_free(lease);
}

/* @name under @dirfd, a directory: made the first time with @mode and the owner @uid:@gid (-1: root's).
 * Never a symlink (O_NOFOLLOW); made 0700 and root's first, then given away through the descriptor,
 * so nobody else ever holds it half made. */
static int open_or_make_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid, GError **error)
{
        gboolean made = mkdirat(dirfd, name, 0700) == 0;
        _cleanup_close_ int fd = -1;

        if (!made && errno != EEXIST)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot make the cache directory %s: %s",
                                 name, g_strerror(errno)),
                       -1;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot open the cache directory %s: %s",
                                 name, g_strerror(errno)),
                       -1;
        if (made && ((uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) || fchmod(fd, mode) < 0))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot set up the cache directory %s: %s",
                                 name, g_strerror(errno)),
                       -1;
        return g_steal_fd(&fd);
}

/* STATE/caches/UID, root's and 0700 (both levels). */
static int open_owner_dir(const char *state_dir, uid_t owner, gboolean make, GError **error)
{
        _cleanup_close_ int state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int caches_fd = -1;
        g_autofree char *name = g_strdup_printf("%u", (unsigned)owner);

        if (state_fd < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "open %s: %s", state_dir, g_strerror(errno)),
                       -1;
        if (!make) {
                caches_fd = openat(state_fd, "caches", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                return caches_fd < 0
                               ? -1
                               : openat(caches_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        caches_fd = open_or_make_dir(state_fd, "caches", 0700, (uid_t)-1, (gid_t)-1, error);
        return caches_fd < 0 ? -1 : open_or_make_dir(caches_fd, name, 0700, (uid_t)-1, (gid_t)-1, error);
}

int kiln_run_cache_open(KilnCacheRegistry *registry, const KilnRunVolume *v, uid_t host_uid, gid_t host_gid,
                        gboolean *ret_private, KilnCacheLease **ret_lease, GError **error)
{
        g_autofree char *key = cache_key(v->cache_owner, v->cache_id);
        _cleanup_close_ int owner_fd = -1, cache_fd = -1;
        CacheUse *use = cache_use(registry, key);
        KilnCacheLease *lease;
        int fd;

        *ret_private = FALSE;
        /* sharing=private never waits: in use (locked or not), it gets a fresh one. */
        if (use && v->cache_sharing == KILN_RUN_CACHE_PRIVATE) {
                *ret_private = TRUE;
                return -1;
        }
        if (use && (use->locked || v->cache_sharing == KILN_RUN_CACHE_LOCKED))
                return kiln_fail(error, KILN_ERROR_CODE_BUSY,
                                 "%s: the cache '%s' is in use by another run (sharing=locked)", v->arg,
                                 v->cache_id),
                       -1;
        owner_fd = open_owner_dir(registry->state_dir, v->cache_owner, TRUE, error);
        if (owner_fd < 0)
                return -1;
        cache_fd = open_or_make_dir(owner_fd, v->cache_id, v->cache_mode, host_uid, host_gid, error);
        if (cache_fd < 0)
                return -1;
        if (v->cache_source) {
                /* Inside the cache only: its contents are the runs' to shape, symlinks included. */
                g_autoptr(GError) local = NULL;
                if (!kiln_rootfs_mkdir_p(cache_fd, v->cache_source, v->cache_mode, host_uid, host_gid,
                                         &local))
                        return kiln_invalid(error, v->arg, "source: %s", local->message), -1;
                fd = kiln_rootfs_open(cache_fd, v->cache_source, O_PATH | O_DIRECTORY, 0);
                if (fd < 0)
                        return kiln_invalid(error, v->arg, "source '%s': %s", v->cache_source,
                                            g_strerror(-fd)),
                               -1;
        } else {
                fd = g_steal_fd(&cache_fd);
        }
        use = cache_use(registry, key);
        if (!use) {
                use = g_new0(CacheUse, 1);
                g_hash_table_insert(registry->in_use, g_strdup(key), use);
        }
        use->users++;
        use->locked = v->cache_sharing == KILN_RUN_CACHE_LOCKED;
        lease = g_new0(KilnCacheLease, 1);
        lease->registry = registry;
        lease->key = g_steal_pointer(&key);
        *ret_lease = lease;
        return fd;
}

static GPtrArray *list_names(int dirfd)
{
        GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
        int fd = dup(dirfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!d) {
                kiln_close_fdp(&fd);
                return names;
        }
        while ((de = readdir(d)))
                if (kiln_name_is_valid(de->d_name, strlen(de->d_name)))
                        g_ptr_array_add(names, g_strdup(de->d_name));
        closedir(d);
        return names;
}

gboolean kiln_run_caches_remove(KilnCacheRegistry *registry, uid_t owner, const char *const *ids,
                                char ***ret_removed, char ***ret_busy, GError **error)
{
        g_autoptr(GStrvBuilder) removed = g_strv_builder_new();
        g_autoptr(GStrvBuilder) busy = g_strv_builder_new();
        g_autoptr(GPtrArray) names = NULL;
        _cleanup_close_ int owner_fd = -1;

        for (const char *const *id = ids; id && *id; id++)
                if (!kiln_validate_name("ids", *id, error))
                        return FALSE;
        owner_fd = open_owner_dir(registry->state_dir, owner, FALSE, NULL);
        if (owner_fd >= 0) {
                if (ids && *ids) {
                        names = g_ptr_array_new_with_free_func(g_free);
                        for (const char *const *id = ids; *id; id++)
                                g_ptr_array_add(names, g_strdup(*id));
                } else {
                        names = list_names(owner_fd);
                }
                for (guint i = 0; i < names->len; i++) {
                        const char *name = names->pdata[i];
                        g_autofree char *key = cache_key(owner, name);
                        g_autofree char *failed = NULL;
                        struct stat st;
                        int r;

                        if (fstatat(owner_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue; /* not there: nothing to remove */
                        if (cache_use(registry, key)) {
                                g_strv_builder_add(busy, name);
                                continue;
                        }
                        /* kiln_rm_rf_at never follows a symlink a run left and never leaves the file
                         * system. */
                        r = kiln_rm_rf_at(owner_fd, name, &failed);
                        if (r < 0)
                                return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                                 "Cannot remove the cache '%s': %s: %s", name,
                                                 failed ? failed : name, g_strerror(-r));
                        g_strv_builder_add(removed, name);
                }
        }
        *ret_removed = g_strv_builder_end(removed);
        *ret_busy = g_strv_builder_end(busy);
        return TRUE;
}
