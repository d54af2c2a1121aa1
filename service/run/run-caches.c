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
        /* StorageBytesPerUser: "UID/ID" → bytes of the cache when last measured (after its last run
         * ended, and once at start-up); G_MAXUINT64 for a tree that could not be measured. */
        GHashTable *bytes;
        guint64 bytes_per_user;
        KilnCacheOtherBytesFunc other_bytes;
        gpointer other_bytes_data;
};

struct KilnCacheLease {
        KilnCacheRegistry *registry;
        char *key;
};

KilnCacheRegistry *kiln_cache_registry_new(const char *state_dir)
{
        KilnCacheRegistry *r = g_atomic_rc_box_new0(KilnCacheRegistry);

        r->state_dir = g_strdup(state_dir);
        r->in_use = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        r->bytes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        r->bytes_per_user = G_MAXUINT64;
        return r;
}

static void registry_clear(KilnCacheRegistry *r)
{
        g_hash_table_unref(r->in_use);
        g_hash_table_unref(r->bytes);
        g_free(r->state_dir);
}

/* Refcounted: a measurement on a worker thread outlives the Manager's reference if kilnd stops. */
void kiln_cache_registry_free(KilnCacheRegistry *r)
{
        if (r)
                g_atomic_rc_box_release_full(r, (GDestroyNotify)registry_clear);
}

static char *cache_key(uid_t owner, const char *id)
{
        return g_strdup_printf("%u/%s", (unsigned)owner, id);
}

static CacheUse *cache_use(KilnCacheRegistry *r, const char *key)
{
        return g_hash_table_lookup(r->in_use, key);
}

/* ---- StorageBytesPerUser: what the caches hold, measured off the main loop ---- */

typedef struct {
        KilnCacheRegistry *registry; /* a reference */
        char *key;                   /* "UID/ID"; NULL: every cache under STATE/caches */
        GHashTable *found;           /* the thread's result: key → bytes */
} Measurement;

static void measurement_free(Measurement *m)
{
        kiln_cache_registry_free(m->registry);
        g_free(m->key);
        g_clear_pointer(&m->found, g_hash_table_unref);
        g_free(m);
}

static void measure_one(int owner_fd, const char *owner, const char *id, GHashTable *found)
{
        _cleanup_close_ int fd = openat(owner_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        guint64 bytes = 0;

        if (fd < 0)
                return; /* removed meanwhile: nothing to count */
        if (kiln_tree_bytes_at(fd, &bytes) < 0)
                bytes = G_MAXUINT64; /* not measurable: counted as full, kiln prune --cache frees it */
        g_hash_table_insert(found, g_strdup_printf("%s/%s", owner, id), g_memdup2(&bytes, sizeof(bytes)));
}

static GPtrArray *list_names(int dirfd);

static void measure_thread(GTask *task, G_GNUC_UNUSED gpointer source, gpointer data,
                           G_GNUC_UNUSED GCancellable *cancellable)
{
        Measurement *m = data;
        g_autofree char *caches = g_build_filename(m->registry->state_dir, "caches", NULL);
        _cleanup_close_ int caches_fd = open(caches, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        g_autoptr(GPtrArray) owners = NULL;

        m->found = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        if (caches_fd < 0) {
                g_task_return_boolean(task, TRUE);
                return;
        }
        if (m->key) {
                g_auto(GStrv) parts = g_strsplit(m->key, "/", 2);
                _cleanup_close_ int owner_fd =
                        openat(caches_fd, parts[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (owner_fd >= 0)
                        measure_one(owner_fd, parts[0], parts[1], m->found);
                g_task_return_boolean(task, TRUE);
                return;
        }
        owners = list_names(caches_fd);
        for (guint i = 0; i < owners->len; i++) {
                _cleanup_close_ int owner_fd =
                        openat(caches_fd, owners->pdata[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                g_autoptr(GPtrArray) ids = owner_fd >= 0 ? list_names(owner_fd) : NULL;
                for (guint j = 0; ids && j < ids->len; j++)
                        measure_one(owner_fd, owners->pdata[i], ids->pdata[j], m->found);
        }
        g_task_return_boolean(task, TRUE);
}

static void measure_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, G_GNUC_UNUSED gpointer data)
{
        Measurement *m = g_task_get_task_data(G_TASK(result));
        GHashTableIter it;
        gpointer key, value;

        if (m->key && !g_hash_table_contains(m->found, m->key))
                g_hash_table_remove(m->registry->bytes, m->key);
        g_hash_table_iter_init(&it, m->found);
        while (g_hash_table_iter_next(&it, &key, &value))
                g_hash_table_insert(m->registry->bytes, g_strdup(key), g_memdup2(value, sizeof(guint64)));
}

/* Measures the cache @key ("UID/ID"), or every cache (NULL), on a worker thread; the result replaces
 * what the table held. Reading a tree a user shapes can take long: never on the main loop. */
static void measure(KilnCacheRegistry *r, const char *key)
{
        g_autoptr(GTask) task = NULL;
        Measurement *m;

        if (r->bytes_per_user == G_MAXUINT64)
                return; /* nothing bounds caches: no need to know */
        m = g_new0(Measurement, 1);
        m->registry = g_atomic_rc_box_acquire(r);
        m->key = g_strdup(key);
        task = g_task_new(NULL, NULL, measure_done, NULL);
        g_task_set_task_data(task, m, (GDestroyNotify)measurement_free);
        g_task_run_in_thread(task, measure_thread);
}

void kiln_cache_registry_set_limit(KilnCacheRegistry *r, guint64 bytes_per_user,
                                   KilnCacheOtherBytesFunc other_bytes, gpointer data)
{
        r->bytes_per_user = bytes_per_user;
        r->other_bytes = other_bytes;
        r->other_bytes_data = data;
        measure(r, NULL);
}

guint64 kiln_cache_registry_user_bytes(KilnCacheRegistry *r, uid_t owner)
{
        g_autofree char *prefix = g_strdup_printf("%u/", (unsigned)owner);
        GHashTableIter it;
        gpointer key, value;
        guint64 total = 0;

        g_hash_table_iter_init(&it, r->bytes);
        while (g_hash_table_iter_next(&it, &key, &value))
                if (g_str_has_prefix(key, prefix))
                        total += MIN(*(guint64 *)value, G_MAXUINT64 - total);
        return total;
}

/* A run of a user bound by StorageBytesPerUser may not use a cache while his caches, layers and images
 * are past it: caches grow during runs (like an upper directory) and are measured after. */
static gboolean over_limit(KilnCacheRegistry *r, const KilnRunVolume *v, GError **error)
{
        guint64 caches, other, used;

        if (v->cache_owner == 0 || r->bytes_per_user == G_MAXUINT64)
                return FALSE;
        caches = kiln_cache_registry_user_bytes(r, v->cache_owner);
        other = r->other_bytes ? r->other_bytes(v->cache_owner, r->other_bytes_data) : 0;
        used = caches + MIN(other, G_MAXUINT64 - caches);
        if (used <= r->bytes_per_user)
                return FALSE;
        if (caches == G_MAXUINT64)
                kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                          "%s: a cache of user %u is too deep to measure and counts as full "
                          "([Limits] StorageBytesPerUser); remove it with kiln prune --cache",
                          v->arg, (unsigned)v->cache_owner);
        else
                kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                          "%s: user %u keeps %" G_GUINT64_FORMAT " bytes of caches and %" G_GUINT64_FORMAT
                          " of layers and images, past [Limits] StorageBytesPerUser=%" G_GUINT64_FORMAT
                          "; remove caches with kiln prune --cache",
                          v->arg, (unsigned)v->cache_owner, caches, other, r->bytes_per_user);
        return TRUE;
}

void kiln_cache_lease_free(KilnCacheLease *lease)
{
        CacheUse *use;

        if (!lease)
                return;
        use = cache_use(lease->registry, lease->key);
        if (use && --use->users == 0) {
                g_hash_table_remove(lease->registry->in_use, lease->key);
                measure(lease->registry, lease->key);
        }
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
        if (over_limit(registry, v, error))
                return -1;
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
                        g_hash_table_remove(registry->bytes, key);
                        g_strv_builder_add(removed, name);
                }
        }
        *ret_removed = g_strv_builder_end(removed);
        *ret_busy = g_strv_builder_end(busy);
        return TRUE;
}
