/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "runtime/isolate-server.h"
#include "runtime/runtime.h"
#include "objects/manager.h"
#include "base/fd-limit.h"
#include "storage/mount-idmap.h"
#include "run/run.h"
#include "base/validate.h"

static char **find_runtimes(char **configured)
{
        g_autoptr(GPtrArray) found = g_ptr_array_new();

        for (char **r = configured; r && *r; r++) {
                /* An absolute path is kept when executable, a name looked up in PATH. */
                g_autofree char *path = g_find_program_in_path(*r);
                if (path)
                        g_ptr_array_add(found, g_strdup(*r));
        }
        g_ptr_array_add(found, NULL);
        return (char **)g_ptr_array_free(g_steal_pointer(&found), FALSE);
}

/* Read once: nothing raises a bounding set, and kilnd does not lower its own. */
static guint64 read_bounding_set(void)
{
        guint64 set = 0;

        for (int cap = 0; cap < (int)cap_max_bits() && cap < 64; cap++)
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
                        set |= G_GUINT64_CONSTANT(1) << cap;
        return set;
}

/* For storage.c: every builder's layer, the one record of which layers are in use. */
static GArray *layer_uses(gpointer data)
{
        KilnManager *m = data;
        GArray *uses = g_array_sized_new(FALSE, FALSE, sizeof(KilnLayerUse), g_hash_table_size(m->builders));
        GHashTableIter iter;
        KilnBuilder *b;

        g_hash_table_iter_init(&iter, m->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b))
                for (char **l = b->layers; *l; l++) /* a builder of an image uses each of its layers */
                        g_array_append_val(uses, ((KilnLayerUse){b->owner, *l}));
        return uses;
}

static gboolean layers_exist(KilnManager *m, const KilnBuilder *b)
{
        for (char **l = b->layers; *l; l++)
                if (!kiln_storage_layer_exists(m->storage, *l))
                        return FALSE;
        return TRUE;
}

/* What StorageBytesPerUser bounds besides caches: the layers the user's builders use, his images. */
static guint64 layers_and_images_bytes(uid_t uid, gpointer data)
{
        KilnManager *m = data;
        guint64 layers = kiln_storage_user_bytes(m->storage, uid);
        guint64 images = m->images_user_bytes ? m->images_user_bytes(m, uid) : 0;

        return layers + MIN(images, G_MAXUINT64 - layers);
}

guint64 kiln_manager_user_storage_bytes(KilnManager *m, uid_t uid)
{
        guint64 other = layers_and_images_bytes(uid, m),
                caches = kiln_cache_registry_user_bytes(m->caches, uid);

        return other + MIN(caches, G_MAXUINT64 - other);
}

KilnManager *kiln_manager_new(KilnConfig *config, KilnStorage *storage, KilnAuth *auth, sd_bus *bus)
{
        KilnManager *m = g_new0(KilnManager, 1);
        g_autofree char *roots = NULL;

        m->config = config;
        m->storage = storage;
        m->auth = auth;
        m->bus = sd_bus_ref(bus);
        m->builders =
                g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)kiln_builder_free);
        m->names = g_hash_table_new(g_str_hash, g_str_equal);
        m->reserved_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->runtimes = find_runtimes(config->runtimes);
        m->bounding_set = read_bounding_set();
        m->seccomp_cache = kiln_seccomp_cache_new();
        m->caches = kiln_cache_registry_new(config->state_dir); /* run parity */
        m->process_reservations = g_hash_table_new(NULL, NULL);
        /* Callers never see where kilnd keeps its own files (errors-bus.c). */
        kiln_error_hide_paths_under(config->state_dir);
        kiln_error_hide_paths_under(config->runtime_dir);
        roots = g_build_filename(config->runtime_dir, "mounts", NULL); /* builders' root file systems */
        kiln_error_show_roots_under(roots);
        kiln_storage_set_limits(storage, config->import_bytes, config->storage_bytes_per_user);
        kiln_storage_set_image_limits(storage, config->image_bytes, config->layers_per_image,
                                      config->entries_per_layer);
        kiln_storage_set_layer_uses(storage, layer_uses, m);
        kiln_cache_registry_set_limit(m->caches, config->storage_bytes_per_user, layers_and_images_bytes, m);
        return m;
}

void kiln_manager_free(KilnManager *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < G_N_ELEMENTS(m->slots); i++)
                sd_bus_slot_unref(m->slots[i]);
        kiln_storage_set_layer_uses(m->storage, NULL, NULL);
        /* Nothing kilnd mounted outlives it (main.c asks for this first; here for every other way
         * out), and from here on a rootfs is unmounted as soon as nobody holds it. */
        kiln_manager_unmount_all(m);
        /* Processes first: freeing a running one kills it and releases its builder's rootfs. */
        if (m->processes) /* made at registration */
                g_hash_table_destroy(m->processes);
        kiln_isolate_server_free(m->isolate_server); /* after the runs it served */
        g_hash_table_destroy(m->names);
        g_hash_table_destroy(m->builders);
        g_hash_table_destroy(m->reserved_names);
        g_hash_table_destroy(m->process_reservations);
        g_strfreev(m->runtimes);
        kiln_seccomp_cache_free(m->seccomp_cache);
        kiln_cache_registry_free(m->caches); /* after the processes, whose runs held leases */
        kiln_userns_free(m->userns);
        sd_bus_unref(m->bus);
        g_free(m);
}

static void add_builder(KilnManager *m, KilnBuilder *b)
{
        b->manager = m;
        g_hash_table_insert(m->builders, b->id, b);
        g_hash_table_insert(m->names, b->name, b);
}

void kiln_manager_load(KilnManager *m)
{
        g_autofree char *dir = g_build_filename(m->config->state_dir, "builders", NULL);
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *entry;

        if (!d)
                return;
        while ((entry = g_dir_read_name(d))) {
                g_autofree char *builder_dir = g_build_filename(dir, entry, NULL);
                g_autofree char *metadata = g_build_filename(builder_dir, "builder.json", NULL);
                g_autoptr(GError) error = NULL;
                KilnBuilder *b;

                if (!kiln_id_is_valid(entry)) {
                        g_warning("Ignoring %s: not a builder directory", builder_dir);
                        continue;
                }
                if (!g_file_test(metadata, G_FILE_TEST_EXISTS)) {
                        /* builder.json is written last: without it, creation never finished. */
                        g_message("Removing half-created builder %s", entry);
                        if (!kiln_storage_remove_builder(m->storage, entry, &error))
                                g_warning("Cannot remove %s: %s", builder_dir, error->message);
                        continue;
                }
                b = kiln_builder_load(builder_dir, &error);
                if (!b) {
                        /* Kept on disk for an administrator to look at; never exported. Its layer is
                         * unknown, so no layer is collected while it is there. */
                        g_warning("Ignoring builder %s: %s", entry, error->message);
                        kiln_storage_keep_layer(m->storage, NULL);
                        continue;
                }
                if (!g_str_equal(b->id, entry) || g_hash_table_contains(m->names, b->name) ||
                    !layers_exist(m, b)) {
                        g_warning("Ignoring builder %s: its id, name or layer does not match the disk",
                                  entry);
                        for (char **l = b->layers; *l; l++)
                                kiln_storage_keep_layer(m->storage, *l);
                        kiln_builder_free(b);
                        continue;
                }
                add_builder(m, b);
        }
        g_message("Loaded %u builders", g_hash_table_size(m->builders));
        /* Layers whose last builder went while kilnd was down. */
        kiln_storage_collect_layers(m->storage);
}

gboolean kiln_manager_name_taken(KilnManager *m, const char *name)
{
        return g_hash_table_contains(m->names, name) || g_hash_table_contains(m->reserved_names, name);
}

guint kiln_manager_count_owned(KilnManager *m, uid_t owner)
{
        GHashTableIter iter;
        KilnBuilder *b;
        guint n = 0;

        g_hash_table_iter_init(&iter, m->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b))
                n += b->owner == owner;
        return n;
}

gboolean kiln_manager_reserve_process(KilnManager *m, uid_t uid, GError **error)
{
        gpointer key = GUINT_TO_POINTER(uid);
        guint reserved = GPOINTER_TO_UINT(g_hash_table_lookup(m->process_reservations, key));
        guint running = m->hooks.count_running ? m->hooks.count_running(m, NULL, uid) : 0;

        /* Every caller, root included: each process holds a runtime, relays and a mount. */
        if (running + reserved >= m->config->processes_per_user)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "User %u already has the limit of %u running processes (ProcessesPerUser)",
                                 (unsigned)uid, m->config->processes_per_user);
        g_hash_table_insert(m->process_reservations, key, GUINT_TO_POINTER(reserved + 1));
        return TRUE;
}

void kiln_manager_release_process(KilnManager *m, uid_t uid)
{
        gpointer key = GUINT_TO_POINTER(uid);
        guint reserved = GPOINTER_TO_UINT(g_hash_table_lookup(m->process_reservations, key));

        g_return_if_fail(reserved > 0);
        if (reserved > 1)
                g_hash_table_insert(m->process_reservations, key, GUINT_TO_POINTER(reserved - 1));
        else
                g_hash_table_remove(m->process_reservations, key);
}

KilnBuilder *kiln_manager_find(KilnManager *m, const char *name_or_id, GError **error)
{
        KilnBuilder *b = g_hash_table_lookup(m->names, name_or_id), *match = NULL;
        size_t len = strlen(name_or_id);
        GHashTableIter iter;

        if (b)
                return b;
        b = g_hash_table_lookup(m->builders, name_or_id);
        if (b)
                return b;
        if (len >= KILN_ID_MIN_PREFIX && len < KILN_ID_LENGTH) {
                g_hash_table_iter_init(&iter, m->builders);
                while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b)) {
                        if (strncmp(b->id, name_or_id, len) != 0)
                                continue;
                        if (match) {
                                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_NOT_FOUND,
                                            "Builder id prefix '%s' is ambiguous", name_or_id);
                                return NULL;
                        }
                        match = b;
                }
                if (match)
                        return match;
        }
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_NOT_FOUND, "No builder '%s'", name_or_id);
        return NULL;
}

const char *kiln_manager_default_userns(KilnManager *m, uid_t owner, const KilnBuilderConfig *config)
{
        if (config->userns && *config->userns)
                return config->userns;
        return owner == 0 ? m->config->default_userns_root : "auto";
}

KilnBuilder *kiln_manager_create_builder(KilnManager *m, const char *name, uid_t owner, const char *from,
                                         const char *const *layers, gboolean layer_shifted,
                                         const char *image, const KilnBuilderConfig *config,
                                         KilnFieldMask config_mask, GError **error)
{
        g_autofree char *id = NULL;
        g_autofree char *dir = NULL;
        g_autoptr(KilnBuilder) b = NULL;
        g_autoptr(GError) cleanup_error = NULL;

        do {
                g_free(id);
                id = kiln_generate_id();
        } while (g_hash_table_contains(m->builders, id));

        b = kiln_builder_new(id, name, owner, from, layers[0], (guint64)g_get_real_time());
        kiln_builder_set_layers(b, layers);
        kiln_builder_set_image(b, image);
        b->layer_shifted = layer_shifted;
        kiln_builder_config_assign(&b->config, config, config_mask);
        /* What a run would use is recorded at creation, as buildah does, so the properties say it:
         * the configured isolation, and for root the configured user namespace (none out of the box,
         * as buildah rootful) but a private one for everyone else. */
        if (!b->config.isolation || !*b->config.isolation) {
                g_free(b->config.isolation);
                b->config.isolation = g_strdup(m->config->default_isolation);
        }
        if (!b->config.userns || !*b->config.userns) {
                g_free(b->config.userns);
                b->config.userns = g_strdup(kiln_manager_default_userns(m, owner, config));
        }
        if (!kiln_storage_create_builder(m->storage, id, error))
                return NULL;
        dir = kiln_storage_builder_dir(m->storage, id);
        if (!kiln_builder_save(b, dir, error)) {
                if (!kiln_storage_remove_builder(m->storage, id, &cleanup_error))
                        g_warning("Cannot remove %s: %s", dir, cleanup_error->message);
                return NULL;
        }
        add_builder(m, b);
        if (m->hooks.builder_added)
                m->hooks.builder_added(m, b);
        return g_steal_pointer(&b);
}

gboolean kiln_manager_remove_builder(KilnManager *m, KilnBuilder *b, GError **error)
{
        /* A mount kept for the next run goes with the builder: kiln_storage_remove_builder unmounts. */
        g_clear_handle_id(&b->rootfs_linger_source, g_source_remove);
        if (!kiln_storage_remove_builder(m->storage, b->id, error))
                return FALSE;
        if (m->hooks.builder_removed)
                m->hooks.builder_removed(m, b);
        g_hash_table_remove(m->names, b->name);
        g_hash_table_remove(m->builders, b->id);
        kiln_storage_collect_layers(m->storage);
        return TRUE;
}

void kiln_manager_unmount_all(KilnManager *m)
{
        GHashTableIter iter;
        KilnBuilder *b;

        /* The runs still going end when the manager is freed, after the main loop has stopped: their
         * release must unmount at once, as no timer would ever fire. */
        m->stopping = TRUE;
        g_hash_table_iter_init(&iter, m->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b)) {
                if (b->mount_path) {
                        g_clear_pointer(&b->mount_path, g_free);
                        kiln_manager_release_rootfs(m, b);
                }
                kiln_manager_unmount_lingering(m, b);
        }
}

gboolean kiln_manager_id_maps(KilnManager *m, uid_t owner, KilnIdMaps *ret, GError **error)
{
        struct passwd pw, *found = NULL;
        char buf[4096];

        if (getpwuid_r(owner, &pw, buf, sizeof(buf), &found) != 0 || !found)
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid userns: the builder's owner %u has no account on this host",
                                 (unsigned)owner);
        return kiln_userns_mappings(m->userns, owner, pw.pw_gid, &ret->uid_map, &ret->gid_map, error);
}

void kiln_manager_detect_idmapped_layers(KilnManager *m)
{
        const KilnIdMapping probe[] = {{0, 65534, 1}};
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int userns_fd = -1;

        m->idmapped_layers = FALSE;
        if (!m->config->idmapped_layers) {
                g_message("Layers are not ID-mapped (IdMappedLayers=false): user namespaces use shifted "
                          "copies");
                return;
        }
        userns_fd = kiln_userns_fd_new(probe, 1, probe, 1, &error);
        if (userns_fd >= 0)
                m->idmapped_layers = kiln_storage_can_idmap_layers(m->storage, userns_fd, &error);
        if (!m->idmapped_layers)
                g_warning("Layers cannot be ID-mapped here (%s): builders with a user namespace get shifted "
                          "copies of their bases",
                          error ? error->message : "unknown");
}

static gboolean same_map(const GArray *a, const GArray *b)
{
        return a && b && a->len == b->len && memcmp(a->data, b->data, a->len * sizeof(KilnIdMapping)) == 0;
}

/* Whether the mount that nobody holds serves, as it is, a run that needs @maps (NULL: none). */
static gboolean lingering_mount_fits(KilnManager *m, KilnBuilder *b, const KilnIdMaps *maps)
{
        dev_t dev;

        if (b->rootfs_idmapped != (maps != NULL))
                return FALSE;
        /* Layers ID-mapped through the maps of that time: the subid files may have changed since. */
        if (maps && !b->layer_shifted &&
            !(same_map(b->rootfs_uid_map, maps->uid_map) && same_map(b->rootfs_gid_map, maps->gid_map)))
                return FALSE;
        /* Unmounted behind kilnd's back, the bare mount point would become the run's root. */
        dev = kiln_storage_mount_device(m->storage, b->id);
        return dev != 0 && dev == b->rootfs_dev;
}

/* A fresh mount: what lingering_mount_fits() will compare with. */
static void remember_mount(KilnManager *m, KilnBuilder *b, const KilnIdMaps *maps)
{
        g_clear_pointer(&b->rootfs_uid_map, g_array_unref);
        g_clear_pointer(&b->rootfs_gid_map, g_array_unref);
        if (maps && !b->layer_shifted) {
                b->rootfs_uid_map = g_array_ref(maps->uid_map);
                b->rootfs_gid_map = g_array_ref(maps->gid_map);
        }
        b->rootfs_dev = kiln_storage_mount_device(m->storage, b->id);
}

static void unmount_rootfs(KilnManager *m, KilnBuilder *b)
{
        g_autoptr(GError) error = NULL;

        if (!kiln_storage_unmount(m->storage, b->id, &error))
                g_warning("Cannot unmount builder %s: %s", b->name, error->message);
}

/* Nobody has held the builder's root file system for [Run] KeepMountedSeconds. */
static gboolean on_keep_mounted_over(gpointer data)
{
        KilnBuilder *b = data;

        b->rootfs_linger_source = 0;
        unmount_rootfs(b->manager, b);
        return G_SOURCE_REMOVE;
}

void kiln_manager_unmount_lingering(KilnManager *m, KilnBuilder *b)
{
        if (!b->rootfs_linger_source)
                return;
        g_clear_handle_id(&b->rootfs_linger_source, g_source_remove);
        unmount_rootfs(m, b);
}

char *kiln_manager_acquire_rootfs(KilnManager *m, KilnBuilder *b, const KilnIdMaps *maps, GError **error)
{
        gboolean idmapped = maps != NULL;
        _cleanup_close_ int userns_fd = -1;
        char *path;

        if (b->rootfs_refs > 0 && b->rootfs_idmapped != idmapped) {
                kiln_fail(error, KILN_ERROR_CODE_BUSY,
                          "Builder '%s' is in use with %s; a run with userns=%s must wait until it ends",
                          b->name, b->rootfs_idmapped ? "its user namespace" : "no user namespace",
                          idmapped ? "auto" : "host");
                return NULL;
        }
        if (idmapped && !b->layer_shifted && !m->idmapped_layers) {
                kiln_fail(
                        error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                        "Invalid userns: layers cannot be ID-mapped on this host, and builder '%s' was made "
                        "without a user namespace; make a new builder with userns=auto",
                        b->name);
                return NULL;
        }
        /* The mount the last run left: reused as it is (no mount syscall) when it is of the kind this
         * holder needs. Of the other kind it is nobody's any more, so it is mounted afresh rather than
         * answering Busy. */
        if (b->rootfs_linger_source) {
                g_clear_handle_id(&b->rootfs_linger_source, g_source_remove);
                if (lingering_mount_fits(m, b, maps)) {
                        b->rootfs_refs++;
                        return kiln_storage_mount_point(m->storage, b->id);
                }
                if (!kiln_storage_unmount(m->storage, b->id, error))
                        return NULL;
        }
        /* A shifted base already has the owners a mapped one would show. */
        if (b->rootfs_refs == 0 && idmapped && !b->layer_shifted) {
                userns_fd = kiln_userns_fd_new(
                        (const KilnIdMapping *)maps->uid_map->data, maps->uid_map->len,
                        (const KilnIdMapping *)maps->gid_map->data, maps->gid_map->len, error);
                if (userns_fd < 0)
                        return NULL;
        }
        /* A mount left by a crash is of unknown kind: held by nobody, it is mounted afresh. */
        if (b->rootfs_refs == 0 && kiln_storage_is_mounted(m->storage, b->id) &&
            !kiln_storage_unmount(m->storage, b->id, error))
                return NULL;
        path = kiln_storage_mount(m->storage, b->id, (const char *const *)b->layers, userns_fd, error);
        if (path) {
                if (b->rootfs_refs == 0)
                        remember_mount(m, b, maps);
                b->rootfs_refs++;
                b->rootfs_idmapped = idmapped;
        }
        return path;
}

void kiln_manager_release_rootfs(KilnManager *m, KilnBuilder *b)
{
        guint64 keep_ms = (guint64)m->config->keep_mounted_seconds * 1000;

        g_return_if_fail(b->rootfs_refs > 0);
        if (--b->rootfs_refs > 0)
                return;
        /* Kept for the next run of a build script, which then skips mount, umount and the mount point
         * (about a millisecond of a chroot run). g_timeout_add rather than _seconds: a one-second
         * setting must not end at once. */
        if (keep_ms > 0 && !m->stopping) {
                b->rootfs_linger_source =
                        g_timeout_add((guint)MIN(keep_ms, G_MAXUINT), on_keep_mounted_over, b);
                return;
        }
        unmount_rootfs(m, b);
}

char *kiln_manager_next_container_id(KilnManager *m, KilnBuilder *b)
{
        return g_strdup_printf("kiln-%.12s-%" G_GUINT64_FORMAT, b->id, ++m->next_container);
}

static gboolean lease_id_maps(gpointer keeper, uid_t owner, KilnIdMaps *ret, GError **error)
{
        return kiln_manager_id_maps(keeper, owner, ret, error);
}

static char *lease_acquire(gpointer keeper, const char *builder_id, const KilnIdMaps *maps, GError **error)
{
        KilnManager *m = keeper;
        KilnBuilder *b = g_hash_table_lookup(m->builders, builder_id);

        if (!b) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "The builder %s is gone", builder_id);
                return NULL;
        }
        return kiln_manager_acquire_rootfs(m, b, maps, error);
}

/* The run ends after its builder only when Remove(force) killed it: nothing is left to release then. */
static void lease_release(gpointer keeper, const char *builder_id)
{
        KilnManager *m = keeper;
        KilnBuilder *b = g_hash_table_lookup(m->builders, builder_id);

        if (b)
                kiln_manager_release_rootfs(m, b);
}

void kiln_manager_run_input(KilnManager *m, KilnBuilder *b, KilnRunInput *ret)
{
        *ret = (KilnRunInput){
                .config = m->config,
                .storage = m->storage,
                .runtimes = m->runtimes,
                .bounding_set = m->bounding_set,
                .seccomp_cache = m->seccomp_cache,
                .caches = m->caches, /* run parity */
                .builder_id = b->id,
                .builder_name = b->name,
                .builder_from = b->from,
                .builder_layer = b->layer,
                .builder_owner = b->owner,
                .builder_config = &b->config,
                .image_volumes = (const char *const *)b->image_volumes,
                .lease = {.keeper = m,
                          .id_maps = lease_id_maps,
                          .acquire = lease_acquire,
                          .release = lease_release},
        };
}

void kiln_manager_send_to_watchers(KilnManager *m, uid_t owner, KilnSignalFactory factory,
                                   gconstpointer data)
{
        g_autoptr(GPtrArray) watchers = kiln_auth_watchers(m->auth, owner);

        for (guint i = 0; i < watchers->len; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
                int r = factory(m, watchers->pdata[i], data, &s);
                if (r >= 0)
                        r = sd_bus_send(m->bus, s, NULL);
                if (r < 0)
                        g_warning("Cannot send a signal to %s: %s", (char *)watchers->pdata[i],
                                  g_strerror(-r));
        }
}

/* Deletes every container left in @root with the first of @runtimes that can. */
static void delete_stale_in(const char *root, char **runtimes)
{
        g_autoptr(GDir) dir = g_dir_open(root, 0, NULL);
        const char *id;

        while (dir && (id = g_dir_read_name(dir))) {
                for (char **r = runtimes; *r; r++) {
                        g_autofree char *path = g_find_program_in_path(*r);
                        const char *argv[] = {path, "--root", root, "delete", "--force", "--", id, NULL};
                        int status = -1;

                        /* The runtime is an exec'd program; between fork and exec only the descriptor limit
                         * is restored (one system call, fd-limit.h). */
                        if (path &&
                            g_spawn_sync(NULL, (char **)argv, NULL,
                                         G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                         kiln_fd_limit_child_setup, NULL, NULL, NULL, &status, NULL) &&
                            g_spawn_check_wait_status(status, NULL)) {
                                g_message("Deleted stale container %s", id);
                                break;
                        }
                }
        }
}

void kiln_manager_delete_stale_containers(KilnManager *m)
{
        g_autofree char *isolate = kiln_run_isolate_path(m->config);
        char *isolate_only[] = {isolate, NULL};

        delete_stale_in(kiln_storage_runtime_root(m->storage), m->runtimes);
        delete_stale_in(kiln_storage_isolate_root(m->storage), isolate_only);
}

void kiln_manager_detect_runtime(KilnManager *m)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *works = NULL;
        guint n = g_strv_length(m->runtimes);

        if (n == 0)
                return;
        works = kiln_runtime_detect(m->runtimes, kiln_storage_runtime_root(m->storage),
                                    m->config->runtime_dir, &error);
        if (!works) {
                g_warning("%s", error->message);
                return;
        }
        for (guint i = 0; i < n; i++) {
                g_autofree char *path = g_find_program_in_path(m->runtimes[i]);
                if (g_strcmp0(path, works) == 0) {
                        char *first = m->runtimes[i];
                        memmove(&m->runtimes[1], &m->runtimes[0], i * sizeof(char *));
                        m->runtimes[0] = first;
                        break;
                }
        }
        g_message("Default runtime: %s (%s)", m->runtimes[0], works);
}
