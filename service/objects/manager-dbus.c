/* SPDX-License-Identifier: Apache-2.0 */
/* org.kiln.Builder1.Manager on the bus, and the registration of every object. */
#include <fcntl.h>
#include <sys/stat.h>

#include "kiln-build-config.h"

#include "bus/bus-properties.h"
#include "objects/builder-dbus.h"
#include "objects/image-dbus.h"
#include "objects/process-dbus.h"
#include "objects/manager.h"
#include "run/run-caches.h"
#include "base/validate.h"
#include "authz/caller-open.h"

/* A CreateBuilder call between its checks and its reply (polkit and the import are asynchronous). */
typedef struct {
        KilnManager *manager;
        sd_bus_message *message;
        char *name; /* reserved in manager->reserved_names until the call ends */
        char *from;
        int rootfs_fd;
        /* An image source (oci:, oci-archive:, docker-archive:, or a directory holding oci-layout). */
        char *image_kind; /* NULL: scratch or a directory tree */
        char *image_path; /* NULL with rootfs_fd */
        char *image_ref;
        char *stored_image; /* images out: the id of an image of kiln's store to import */
        char *platform;
        char *image_json; /* the image's digest and history, for builder.json */
        char *progress;   /* the caller's token for ImportProgress; NULL: he wants none */
        gint64 progress_sent;
        KilnBuilderConfig config;
        KilnFieldMask mask;
        KilnCreds creds; /* groups borrowed from the auth cache are copied: the caller may leave */
        GCancellable *cancellable;
        gboolean importing; /* kiln-import holds the request now: on_import_done frees it */
} CreateRequest;

static void create_request_free(gpointer data)
{
        CreateRequest *req = data;

        if (req->name)
                g_hash_table_remove(req->manager->reserved_names, req->name);
        g_free(req->name);
        g_free(req->from);
        kiln_close_fdp(&req->rootfs_fd);
        g_free(req->image_kind);
        g_free(req->image_path);
        g_free(req->image_ref);
        g_free(req->stored_image);
        g_free(req->platform);
        g_free(req->progress);
        g_free(req->image_json);
        kiln_builder_config_clear(&req->config);
        g_free(req->creds.groups);
        g_clear_object(&req->cancellable);
        sd_bus_message_unref(req->message);
        g_free(req);
}

/* The authorization's destroy notify: it runs after create_authorized, or alone when the caller left
 * while polkit was asked. */
static void create_request_release(gpointer data)
{
        CreateRequest *req = data;

        if (!req->importing)
                create_request_free(req);
}

static void create_reply_error(CreateRequest *req, const GError *error)
{
        _cleanup_(sd_bus_error_free) sd_bus_error bus_error = SD_BUS_ERROR_NULL;

        kiln_error_to_bus(error, &bus_error);
        sd_bus_reply_method_error(req->message, &bus_error);
}

static void create_finish(CreateRequest *req, const char *const *layers, gboolean shifted)
{
        g_autoptr(GError) error = NULL;
        KilnBuilder *b;

        /* Release the reservation first: the builder takes the name itself. */
        g_hash_table_remove(req->manager->reserved_names, req->name);
        b = kiln_manager_create_builder(req->manager, req->name, req->creds.uid, req->from, layers, shifted,
                                        req->image_json, &req->config, req->mask, &error);
        g_clear_pointer(&req->name, g_free);
        if (!b)
                create_reply_error(req, error);
        else
                sd_bus_reply_method_return(req->message, "o", b->object_path);
}

/* A map as kiln-import takes it: "C:H:N,C:H:N,...". */
static char *format_shift(const GArray *map)
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < map->len; i++) {
                const KilnIdMapping *m = &g_array_index(map, KilnIdMapping, i);
                g_string_append_printf(s, "%s%u:%u:%u", i ? "," : "", m->container_id, m->host_id, m->size);
        }
        return g_string_free(s, FALSE);
}

static void on_shift_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CreateRequest *req = data;
        g_autoptr(GError) error = NULL;
        g_autofree char *layer = kiln_storage_import_finish(req->manager->storage, result, &error);

        if (layer)
                create_finish(req, (const char *const[]){layer, NULL}, TRUE);
        else if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
                g_prefix_error(&error, "Cannot make a copy of '%s' for the user namespace: ", req->from);
                create_reply_error(req, error);
        }
        create_request_free(req);
}

/* The builder on its base @layer; where layers cannot be ID-mapped, a builder with a user namespace
 * first gets a copy of it shifted to its owner's maps (made once per base and map: the copy is a
 * content-addressed layer like any other). TRUE when kiln-import now holds the request. */
static gboolean create_on_base(CreateRequest *req, const char *const *layers)
{
        KilnManager *m = req->manager;
        g_auto(KilnIdMaps) maps = {0};
        g_autoptr(GError) error = NULL;
        g_autofree char *uid_shift = NULL, *gid_shift = NULL;

        if (m->idmapped_layers ||
            g_strcmp0(kiln_manager_default_userns(m, req->creds.uid, &req->config), "auto") != 0) {
                create_finish(req, layers, FALSE);
                return FALSE;
        }
        if (g_strv_length((char **)layers) > 1) {
                /* A shifted copy is made of one layer; of several, each whiteout would have to survive
                 * the copy and the copies be stacked again. Not done: ID-mapped layers are needed. */
                g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid from: '%s' has %u layers, and layers cannot be ID-mapped on this host "
                            "(a user namespace needs a shifted copy, made only of single-layer images)",
                            req->from, g_strv_length((char **)layers));
                create_reply_error(req, error);
                return FALSE;
        }
        if (!kiln_manager_id_maps(m, req->creds.uid, &maps, &error)) {
                create_reply_error(req, error);
                return FALSE;
        }
        uid_shift = format_shift(maps.uid_map);
        gid_shift = format_shift(maps.gid_map);
        req->importing = TRUE;
        kiln_storage_shift_layer_async(m->storage, layers[0], uid_shift, gid_shift, req->cancellable,
                                       on_shift_done, req);
        return TRUE;
}

static void on_import_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CreateRequest *req = data;
        g_autoptr(GError) error = NULL;
        g_autofree char *layer = kiln_storage_import_finish(req->manager->storage, result, &error);

        if (!layer) {
                /* A caller that left gets no reply; one that is still there learns why. */
                if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
                        g_prefix_error(&error, "Cannot import from '%s': ", req->from);
                        create_reply_error(req, error);
                }
        } else if (create_on_base(req, (const char *const[]){layer, NULL})) {
                return;
        }
        create_request_free(req);
}

#define IMAGE_JSON_MAX (64 * 1024)
#define PROGRESS_TOKEN_MAX 128   /* bytes of CreateBuilder's progress option */
#define PROGRESS_INTERVAL_MS 250 /* ImportProgress at most 4 times a second */

/* The image config (what kiln-import printed of it) as the builder's configuration: each value passes
 * the same checks as Configure's, named as the image's; the caller's own options win. */
static gboolean apply_image_config(CreateRequest *req, const KilnImportedImage *image, GError **error)
{
        static const struct {
                const char *image_key, *key;
        } strings[] = {{"WorkingDir", "working_dir"}, {"User", "user"}, {"StopSignal", "stop_signal"}},
          arrays[] = {{"Env", "env"}, {"Entrypoint", "entrypoint"}, {"Cmd", "cmd"}};
        JsonObject *result = json_node_get_object(image->result);
        JsonObject *c = json_object_has_member(result, "config") &&
                                        JSON_NODE_HOLDS_OBJECT(json_object_get_member(result, "config"))
                                ? json_object_get_object_member(result, "config")
                                : NULL;
        g_autoptr(JsonObject) mapped = json_object_new();
        g_autoptr(JsonObject) kept = json_object_new();
        g_auto(KilnBuilderConfig) config = {0};
        KilnFieldMask mask = 0;
        JsonNode *n;

        for (size_t i = 0; c && i < G_N_ELEMENTS(strings); i++) {
                n = json_object_get_member(c, strings[i].image_key);
                if (n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING &&
                    *json_node_get_string(n))
                        json_object_set_member(mapped, strings[i].key, json_node_copy(n));
        }
        for (size_t i = 0; c && i < G_N_ELEMENTS(arrays); i++) {
                n = json_object_get_member(c, arrays[i].image_key);
                if (n && JSON_NODE_HOLDS_ARRAY(n))
                        json_object_set_member(mapped, arrays[i].key, json_node_copy(n));
        }
        n = c ? json_object_get_member(c, "Labels") : NULL;
        if (n && JSON_NODE_HOLDS_OBJECT(n))
                json_object_set_member(mapped, "labels", json_node_copy(n));
        /* ExposedPorts and Volumes are sets: objects whose keys are the values. */
        n = c ? json_object_get_member(c, "ExposedPorts") : NULL;
        if (n && JSON_NODE_HOLDS_OBJECT(n)) {
                g_autoptr(GList) keys = json_object_get_members(json_node_get_object(n));
                JsonArray *ports = json_array_new();
                for (GList *k = keys; k; k = k->next)
                        json_array_add_string_element(ports, k->data);
                json_object_set_array_member(mapped, "exposed_ports", ports);
        }
        if (!kiln_builder_config_from_json(&config, mapped, error)) {
                g_prefix_error(error, "Invalid from: the image config of '%s': ", req->from);
                return FALSE;
        }
        for (size_t i = 0; i < kiln_config_n_fields; i++)
                if (json_object_has_member(mapped, kiln_config_fields[i].key))
                        mask |= 1u << i;
        /* The caller's options over the image's. */
        kiln_builder_config_assign(&config, &req->config, req->mask);
        kiln_builder_config_assign(&req->config, &config, mask | req->mask);
        req->mask |= mask;

        /* Kept for `kiln inspect` and a later commit: the digest, what the builder does not use, and
         * the history. */
        json_object_set_string_member(kept, "digest", image->digest);
        for (const char *const *k = (const char *const[]){"Volumes", NULL}; *k; k++)
                if (c && (n = json_object_get_member(c, *k)))
                        json_object_set_member(kept, *k, json_node_copy(n));
        for (const char *const *k = (const char *const[]){"history", "os", "architecture", NULL}; *k; k++)
                if ((n = json_object_get_member(result, *k)))
                        json_object_set_member(kept, *k, json_node_copy(n));
        {
                g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), kept);
                req->image_json = json_to_string(node, FALSE);
                /* The Image property is sent with every listing of the builder: a long history stays
                 * out of it (IMAGE_JSON_MAX), the digest names the image it came from. */
                if (strlen(req->image_json) > IMAGE_JSON_MAX) {
                        json_object_remove_member(kept, "history");
                        g_free(req->image_json);
                        req->image_json = json_to_string(node, FALSE);
                }
                if (strlen(req->image_json) > IMAGE_JSON_MAX) {
                        g_autoptr(JsonObject) small = json_object_new();
                        g_autoptr(JsonNode) small_node = NULL;
                        json_object_set_string_member(small, "digest", image->digest);
                        small_node = json_node_init_object(json_node_alloc(), small);
                        g_free(req->image_json);
                        req->image_json = json_to_string(small_node, FALSE);
                }
        }
        return TRUE;
}

/* ImportProgress to the caller alone (the destination is his unique name: nobody else's connection
 * gets it, whatever it matches), at most every PROGRESS_INTERVAL_MS, and always the last one. */
static void on_import_progress(guint layer, guint layers, guint64 bytes, guint64 total, gpointer data)
{
        CreateRequest *req = data;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        const char *sender = sd_bus_message_get_sender(req->message);
        gint64 now = g_get_monotonic_time();
        gboolean last = layers > 0 && layer == layers && bytes == total;

        if (!req->progress || !sender || (!last && now - req->progress_sent < PROGRESS_INTERVAL_MS * 1000))
                return;
        req->progress_sent = now;
        if (sd_bus_message_new_signal(sd_bus_message_get_bus(req->message), &s, KILN_MANAGER_PATH,
                                      KILN_MANAGER_INTERFACE, "ImportProgress") < 0 ||
            sd_bus_message_append(s, "suutt", req->progress, (uint32_t)layer, (uint32_t)layers,
                                  (uint64_t)bytes, (uint64_t)total) < 0 ||
            sd_bus_message_set_destination(s, sender) < 0)
                return;
        (void)sd_bus_send(NULL, s, NULL);
}

static void on_image_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CreateRequest *req = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnImportedImage) image =
                kiln_storage_import_image_finish(req->manager->storage, result, &error);

        if (!image) {
                if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
                        g_prefix_error(&error, "Cannot import from '%s': ", req->from);
                        create_reply_error(req, error);
                }
        } else if (!apply_image_config(req, image, &error)) {
                create_reply_error(req, error);
        } else if (create_on_base(req, (const char *const *)image->layers)) {
                return;
        }
        create_request_free(req);
}

/* Images out: the stored image's archive is written; it is imported as the caller's would be. */
static void on_stored_image_exported(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CreateRequest *req = data;
        g_autoptr(GError) error = NULL;
        int fd = req->manager->finish_export(result, &error);

        if (fd < 0) {
                if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                        create_reply_error(req, error);
                create_request_free(req);
                return;
        }
        kiln_storage_import_image_async(req->manager->storage, req->image_kind, NULL, fd, NULL,
                                        req->platform, &req->creds, on_import_progress, req,
                                        req->cancellable, on_image_done, req);
}

static void create_authorized(sd_bus_message *m, const sd_bus_error *denied, gpointer data)
{
        CreateRequest *req = data;
        g_autoptr(GError) error = NULL;
        g_autofree char *layer = NULL;

        if (denied) {
                sd_bus_reply_method_error(m, denied);
                return;
        }
        if (req->stored_image && !req->platform && req->manager->stored_image_imported) {
                g_autoptr(KilnImportedImage) image =
                        req->manager->stored_image_imported(req->manager, req->stored_image);
                /* Every layer stored: no archive, no helper (image-dbus.c says why that is safe). */
                if (image) {
                        if (!apply_image_config(req, image, &error))
                                create_reply_error(req, error);
                        else
                                create_on_base(req, (const char *const *)image->layers);
                        return;
                }
        }
        if (req->stored_image) {
                req->importing = TRUE;
                req->manager->export_stored_image(req->manager, req->stored_image, req->cancellable,
                                                  on_stored_image_exported, req);
                return;
        }
        if (req->image_kind) {
                /* The path (or the descriptor) is read by kiln-import's reader as the caller. */
                req->importing = TRUE;
                kiln_storage_import_image_async(req->manager->storage, req->image_kind, req->image_path,
                                                kiln_steal_fd(&req->rootfs_fd), req->image_ref,
                                                req->platform, &req->creds, on_import_progress, req,
                                                req->cancellable, on_image_done, req);
                return;
        }
        if (req->rootfs_fd >= 0 || g_str_has_prefix(req->from, "/")) {
                const char *path = req->rootfs_fd >= 0 ? NULL : req->from;
                /* The path is opened by kiln-import as the caller, never by the service. */
                req->importing = TRUE;
                kiln_storage_import_async(req->manager->storage, path, kiln_steal_fd(&req->rootfs_fd),
                                          &req->creds, req->cancellable, on_import_done, req);
                return;
        }
        layer = kiln_storage_scratch_layer(req->manager->storage, &error);
        if (!layer)
                create_reply_error(req, error);
        else
                create_on_base(req, (const char *const[]){layer, NULL}); /* if it goes to kiln-import, the
                                                                          * release leaves req alone */
}

static gboolean read_rootfs_fd(sd_bus_message *m, CreateRequest *req, GError **error)
{
        const char *contents = NULL;
        struct stat st;
        char type;
        int fd;

        if (sd_bus_message_peek_type(m, &type, &contents) < 0 || !contents || !g_str_equal(contents, "h"))
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid rootfs_fd: expected a value of type 'h', got '%s'",
                                 contents ? contents : "?");
        if (sd_bus_message_read(m, "v", "h", &fd) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid rootfs_fd: cannot read it");
        /* A directory (a tree or an OCI layout) or, for an archive, a regular file. */
        if (fstat(fd, &st) < 0 || (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)))
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid rootfs_fd: not an open directory or file");
        /* The message owns its descriptor; the import needs its own. */
        kiln_close_fdp(&req->rootfs_fd);
        req->rootfs_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (req->rootfs_fd < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "Cannot duplicate rootfs_fd: %s", g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

/* "os/arch[/variant]", each part [a-z0-9._-], as OCI platforms are written. */
static gboolean check_platform(const char *v, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(v, "/", 4);
        guint n = g_strv_length(parts);

        for (guint i = 0; i < n && n >= 2 && n <= 3; i++) {
                if (!parts[i][0] || strlen(parts[i]) > 64)
                        goto invalid;
                for (const char *c = parts[i]; *c; c++)
                        if (!g_ascii_isalnum(*c) && !strchr("._-", *c))
                                goto invalid;
        }
        if (n >= 2 && n <= 3)
                return TRUE;
invalid:
        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                         "Invalid platform: '%.64s' is not OS/ARCH or OS/ARCH/VARIANT (such as linux/arm64)",
                         v);
}

/* The image sources, named as skopeo names them: KIND:PATH[:REF]. The path ends at the first ':' after
 * the kind (skopeo splits the same way); REF is a tag or name for oci: and oci-archive:, NAME:TAG or @N
 * for docker-archive:. */
static const char *const image_kinds[] = {"oci", "oci-archive", "docker-archive"};

static gboolean parse_image_source(CreateRequest *req, const char *from, GError **error)
{
        const char *colon = strchr(from, ':'), *path, *ref;
        g_autofree char *kind = NULL, *p = NULL;
        struct stat st;

        if (!colon)
                return TRUE;
        kind = g_strndup(from, colon - from);
        if (!g_strv_contains(image_kinds, kind))
                return TRUE; /* not an image source: checked as a path below */
        path = colon + 1;
        ref = strchr(path, ':');
        p = ref ? g_strndup(path, ref - path) : g_strdup(path);
        if (ref && (!ref[1] || strlen(ref + 1) > 256 || !g_utf8_validate(ref + 1, -1, NULL)))
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid from: the reference after '%s:PATH:' is empty or not a name",
                                 kind);
        for (const char *c = ref ? ref + 1 : ""; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid from: the reference holds a control character");
        if (!g_path_is_absolute(p))
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid from: '%s': the path after '%s:' must be absolute", from, kind);
        if (!kiln_validate_absolute_path("from", p, FALSE, error))
                return FALSE;
        if (req->rootfs_fd >= 0) {
                /* The descriptor decides; PATH only names it. */
                if (fstat(req->rootfs_fd, &st) < 0 || (g_str_equal(kind, "oci") != !!S_ISDIR(st.st_mode)))
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid rootfs_fd: %s needs %s", kind,
                                         g_str_equal(kind, "oci") ? "an open directory" : "an open file");
        } else {
                req->image_path = g_strdup(p);
        }
        req->image_kind = g_steal_pointer(&kind);
        req->image_ref = ref ? g_strdup(ref + 1) : NULL;
        return TRUE;
}

/* Options of CreateBuilder: any Configure key, plus rootfs_fd and platform. */
static gboolean read_create_options(sd_bus_message *m, CreateRequest *req, GError **error)
{
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const KilnConfigField *field;
                const char *key;

                if (sd_bus_message_read_basic(m, 's', &key) < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid options: cannot read them");
                if (!kiln_check_array_limit("options", ++n, req->manager->config, error))
                        return FALSE;
                if (g_str_equal(key, "rootfs_fd")) {
                        if (!read_rootfs_fd(m, req, error))
                                return FALSE;
                } else if (g_str_equal(key, "progress")) {
                        const char *v;
                        if (sd_bus_message_read(m, "v", "s", &v) < 0 || !v[0] ||
                            strlen(v) > PROGRESS_TOKEN_MAX || !g_utf8_validate(v, -1, NULL))
                                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                                 "Invalid progress: expected a string of 1 to %d bytes",
                                                 PROGRESS_TOKEN_MAX);
                        g_free(req->progress);
                        req->progress = g_strdup(v);
                } else if (g_str_equal(key, "platform")) {
                        const char *v;
                        if (sd_bus_message_read(m, "v", "s", &v) < 0)
                                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                                 "Invalid platform: expected a string");
                        if (!check_platform(v, error))
                                return FALSE;
                        g_free(req->platform);
                        req->platform = g_strdup(v);
                } else if ((field = kiln_config_field_lookup(key))) {
                        if (!kiln_builder_config_read_variant(&req->config, field, m, req->manager->config,
                                                              error))
                                return FALSE;
                        req->mask |= 1u << (field - kiln_config_fields);
                } else {
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid options: unknown key '%.64s'", key);
                }
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid options: cannot read them: %s", g_strerror(-r));
        return TRUE;
}

static gboolean name_taken(const char *name, gpointer data)
{
        return kiln_manager_name_taken(data, name);
}

static guint reserved_by(KilnManager *m, uid_t uid)
{
        GHashTableIter iter;
        gpointer owner;
        guint n = 0;

        g_hash_table_iter_init(&iter, m->reserved_names);
        while (g_hash_table_iter_next(&iter, NULL, &owner))
                n += GPOINTER_TO_UINT(owner) == uid;
        return n;
}

/* Everything CreateBuilder checks before asking polkit; nothing here changes any state. */
static gboolean check_create(CreateRequest *req, const char *name, const char *from, GError **error)
{
        KilnManager *m = req->manager;
        const KilnConfig *limits = m->config;

        if (!kiln_check_string_limit("name", name, limits, error) ||
            !kiln_check_string_limit("from", from, limits, error))
                return FALSE;
        if (*name && !kiln_validate_name("name", name, error))
                return FALSE;
        if (*name && kiln_manager_name_taken(m, name)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_EXISTS, "A builder named '%s' already exists",
                            name);
                return FALSE;
        }
        if (!parse_image_source(req, from, error))
                return FALSE;
        if (req->image_kind)
                goto checked_from;
        /* Images out: the name or id of an image in kiln's store, imported from kilnd's own oci-archive
         * of it (image-dbus.c) as any archive is. */
        if (req->rootfs_fd < 0 && !g_str_equal(from, "scratch") && !g_str_has_prefix(from, "/") &&
            m->find_stored_image && (req->stored_image = m->find_stored_image(m, req->message, from))) {
                req->image_kind = g_strdup("oci-archive");
                goto checked_from;
        }
        if (req->platform)
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid platform: '%s' is not an image", from);
        if (req->rootfs_fd >= 0) {
                struct stat st;
                /* Only an archive source takes a file. */
                if (fstat(req->rootfs_fd, &st) < 0 || !S_ISDIR(st.st_mode))
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid rootfs_fd: not an open directory (a file needs "
                                         "from 'oci-archive:PATH' or 'docker-archive:PATH')");
                if (!g_str_has_prefix(from, "/"))
                        return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                         "Invalid from: with rootfs_fd, from must be the "
                                         "directory's absolute path, got '%s'",
                                         from);
        } else if (!g_str_equal(from, "scratch") && !g_str_has_prefix(from, "/")) {
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid from: '%s' is not 'scratch', an absolute directory path, "
                                 "'oci:DIR[:REF]', 'oci-archive:FILE[:REF]' or "
                                 "'docker-archive:FILE[:NAME:TAG|@N]'",
                                 from);
        }
        if (!kiln_validate_absolute_path("from", g_str_equal(from, "scratch") ? "/" : from, FALSE, error))
                return FALSE;
        if (req->rootfs_fd < 0 && g_str_has_prefix(from, "/")) {
                /* A directory holding oci-layout is an image, not a root file system: looked at as the
                 * caller, who may see it or not, exactly as the import would. */
                g_autofree char *marker = g_build_filename(from, "oci-layout", NULL);
                _cleanup_close_ int fd = kiln_open_as_caller(&req->creds, marker);
                if (fd >= 0) {
                        req->image_kind = g_strdup("oci");
                        req->image_path = g_strdup(from);
                }
        }
checked_from:
        if (req->creds.uid != 0 &&
            kiln_manager_count_owned(m, req->creds.uid) + reserved_by(m, req->creds.uid) >=
                    limits->builders_per_user) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                            "User %u already has the limit of %u builders", (unsigned)req->creds.uid,
                            limits->builders_per_user);
                return FALSE;
        }
        if (g_hash_table_size(m->builders) + g_hash_table_size(m->reserved_names) >= limits->max_builders) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                            "The host already has the limit of %u builders", limits->max_builders);
                return FALSE;
        }
        return TRUE;
}

static int method_create_builder(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnManager *manager = userdata;
        CreateRequest *req = g_new0(CreateRequest, 1);
        g_autoptr(GError) local = NULL;
        const KilnCreds *creds;
        const char *name, *from;
        const char *details[] = {"name", NULL, "from", NULL, NULL};
        int r;

        req->manager = manager;
        req->message = sd_bus_message_ref(m);
        req->rootfs_fd = -1;

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                goto fail;
        req->creds = *creds;
        req->creds.groups = g_memdup2(creds->groups, sizeof(gid_t) * creds->n_groups);

        r = sd_bus_message_read(m, "ss", &name, &from);
        if (r < 0)
                goto fail;
        if (!read_create_options(m, req, &local) || !check_create(req, name, from, &local)) {
                r = kiln_error_to_bus(local, error);
                goto fail;
        }

        req->from = g_strdup(from);
        req->name = *name ? g_strdup(name) : kiln_generate_builder_name(from, name_taken, manager);
        g_hash_table_insert(manager->reserved_names, g_strdup(req->name), GUINT_TO_POINTER(req->creds.uid));
        req->cancellable = kiln_auth_caller_cancellable(manager->auth, m);

        details[1] = req->name;
        details[3] = req->from;
        return kiln_auth_check_method(manager->auth, m, details, create_authorized, req,
                                      create_request_release);

fail:
        create_request_free(req);
        return r;
}

static int method_get_builder(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnManager *manager = userdata;
        g_autoptr(GError) local = NULL;
        const char *name_or_id;
        KilnBuilder *b;
        int r;

        kiln_auth_track_caller(manager->auth, m);
        r = sd_bus_message_read(m, "s", &name_or_id);
        if (r < 0)
                return r;
        if (!*name_or_id)
                return sd_bus_error_set(error, KILN_ERROR_INVALID_ARGUMENT,
                                        "Invalid name_or_id: it is empty");
        if (!kiln_check_string_limit("name_or_id", name_or_id, manager->config, &local))
                return kiln_error_to_bus(local, error);
        b = kiln_manager_find(manager, name_or_id, &local);
        if (!b)
                return kiln_error_to_bus(local, error);
        /* Someone else's builder answers exactly like a missing one. */
        if (!kiln_auth_may_access(manager->auth, m, b->owner))
                return sd_bus_error_setf(error, KILN_ERROR_NOT_FOUND, "No builder '%s'", name_or_id);
        return sd_bus_reply_method_return(m, "o", b->object_path);
}

/* The listings (GetManagedObjects, ListBuilders) grow with what all users keep, so their size is bounded
 * before they are built (bus/bus-properties.h); a listing past it answers LimitExceeded instead
 * (docs/decisions.md has the arithmetic). */
#define REPLY_BYTES_MAX KILN_BUS_REPLY_BYTES_MAX

/* An upper bound of a builder's entry in GetManagedObjects (as process_listing_bytes, process-dbus.c):
 * each string costs at most its length + 8 bytes, each map entry two strings; the fixed part (path, the
 * standard interfaces, 20 property names and types, padding) stays under 2 KiB. */
static guint64 builder_listing_bytes(KilnManager *m, const KilnBuilder *b)
{
        g_auto(GStrv) processes = kiln_process_paths_of(m, b->id);
        guint64 n = 2048 + strlen(b->object_path) + strlen(b->id) + strlen(b->name) + strlen(b->from) + 32;

        for (size_t i = 0; i < kiln_config_n_fields; i++) {
                const KilnConfigField *f = &kiln_config_fields[i];
                const char *at = (const char *)&b->config + f->offset;

                n += 64; /* name, variant signature, dict entry padding */
                if (kiln_config_field_is_scalar(f)) {
                        const char *v = *(char *const *)at;
                        n += (v ? strlen(v) : 0) + 8;
                } else {
                        for (char *const *v = *(char **const *)at; v && *v; v++)
                                n += strlen(*v) + 16;
                }
        }
        for (char **p = processes; *p; p++)
                n += strlen(*p) + 8;
        /* Images: Layers and Image. */
        for (char **l = b->layers; l && *l; l++)
                n += strlen(*l) + 16;
        n += 64 + (b->image ? strlen(b->image) : 0);
        return n;
}

/* Runs before sd-bus's own object manager builds the GetManagedObjects reply (filters see each incoming
 * message first). Every path is estimated against all that the caller may see: a subtree is smaller. */
static int filter_managed_objects(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;
        GHashTableIter iter;
        KilnBuilder *b;
        guint64 n;

        if (!sd_bus_message_is_method_call(m, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"))
                return 0;
        n = kiln_process_listing_bytes(manager, m) + kiln_images_listing_bytes(manager, m);
        g_hash_table_iter_init(&iter, manager->builders);
        while (n <= REPLY_BYTES_MAX && g_hash_table_iter_next(&iter, NULL, (gpointer *)&b))
                if (kiln_auth_may_access(manager->auth, m, b->owner))
                        n += builder_listing_bytes(manager, b);
        if (n <= REPLY_BYTES_MAX)
                return 0; /* sd-bus answers */
        g_warning("Refusing GetManagedObjects from %s: the reply could reach %" G_GUINT64_FORMAT " bytes",
                  sd_bus_message_get_sender(m) ?: "?", n);
        (void)sd_bus_reply_method_errorf(
                m, KILN_ERROR_LIMIT_EXCEEDED,
                "The objects would not fit in one bus message (more than %" G_GUINT64_FORMAT
                " bytes): list builders with ListBuilders and images with ListImages, read objects one "
                "by one",
                REPLY_BYTES_MAX);
        return 1; /* answered: sd-bus does not see it */
}

static int compare_by_name(gconstpointer a, gconstpointer b)
{
        return strcmp((*(KilnBuilder *const *)a)->name, (*(KilnBuilder *const *)b)->name);
}

static int method_list_builders(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnManager *manager = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) visible = g_ptr_array_new();
        GHashTableIter iter;
        guint64 size = 64;
        KilnBuilder *b;
        int r;

        kiln_auth_track_caller(manager->auth, m);
        g_hash_table_iter_init(&iter, manager->builders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&b))
                if (kiln_auth_may_access(manager->auth, m, b->owner))
                        g_ptr_array_add(visible, b);
        g_ptr_array_sort(visible, compare_by_name);

        /* Each entry: 4 strings and an object path (length + 8 at most each), a uint32, struct padding. */
        for (guint i = 0; i < visible->len; i++) {
                b = visible->pdata[i];
                size += strlen(b->id) + strlen(b->name) + strlen(b->from) + strlen(b->object_path) + 48;
        }
        if (size > REPLY_BYTES_MAX)
                return sd_bus_error_setf(error, KILN_ERROR_LIMIT_EXCEEDED,
                                         "The list of %u builders would not fit in one bus message (more "
                                         "than %" G_GUINT64_FORMAT " bytes)",
                                         visible->len, REPLY_BYTES_MAX);

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ssuso)");
        for (guint i = 0; r >= 0 && i < visible->len; i++) {
                b = visible->pdata[i];
                r = sd_bus_message_append(reply, "(ssuso)", b->id, b->name, (uint32_t)b->owner, b->from,
                                          b->object_path);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* A limit of kiln.conf as GetInfo shows it: 0 for "no bound", as kiln.conf writes it. */
static int append_limit(sd_bus_message *reply, const char *name, guint64 value)
{
        return sd_bus_message_append(reply, "{st}", name, value == G_MAXUINT64 ? (guint64)0 : value);
}

/* GetInfo: what a caller may want to know before building, for the caller: its storage and the limits
 * that bind it (uid 0 is not bound by BuildersPerUser and StorageBytesPerUser, so they are left out). No
 * polkit action: everything here but the caller's own storage is in kiln.conf, which anyone may read. */
static int method_get_info(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnManager *manager = userdata;
        const KilnConfig *c = manager->config;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const KilnCreds *creds;
        gboolean root;
        int r;

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                return r;
        root = creds->uid == 0;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}", "version", "s", KILN_VERSION, "default_runtime",
                                          "s", manager->runtimes[0] ? manager->runtimes[0] : "");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "runtimes");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(reply, manager->runtimes);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_append(
                        reply, "{sv}{sv}{sv}{sv}", "default_isolation", "s", c->default_isolation,
                        "default_network", "s", c->network_default ? c->network_default : "private",
                        "default_userns", "s", root ? c->default_userns_root : "auto", "storage_bytes", "t",
                        kiln_manager_user_storage_bytes(manager, creds->uid));
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "limits");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a{st}");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{st}");
        if (r >= 0 && !root)
                r = append_limit(reply, "BuildersPerUser", c->builders_per_user);
        if (r >= 0 && !root)
                r = append_limit(reply, "StorageBytesPerUser", c->storage_bytes_per_user);
        if (r >= 0)
                r = append_limit(reply, "ProcessesPerUser", c->processes_per_user);
        if (r >= 0)
                r = append_limit(reply, "ArgumentBytes", c->argument_bytes);
        if (r >= 0)
                r = append_limit(reply, "ProcessBytesPerUser", c->process_bytes_per_user);
        if (r >= 0)
                r = append_limit(reply, "LingeringProcessesPerUser", c->lingering_per_user);
        if (r >= 0)
                r = append_limit(reply, "DescriptorsPerUser", c->descriptors_per_user);
        if (r >= 0)
                r = append_limit(reply, "AuthorizationsPerUser", c->authorizations_per_user);
        if (r >= 0)
                r = append_limit(reply, "ImportBytes", c->import_bytes);
        /* images out: uid 0 may own any number of images, but its configs are bounded too */
        if (r >= 0 && !root)
                r = append_limit(reply, "ImagesPerUser", c->images_per_user);
        if (r >= 0)
                r = append_limit(reply, "ImageConfigBytes", c->image_config_bytes);
        /* Copy/CopyOut */
        if (r >= 0)
                r = append_limit(reply, "CopyBytes", c->copy_bytes);
        if (r >= 0)
                r = append_limit(reply, "CopyEntries", c->copy_entries);
        if (r >= 0)
                r = append_limit(reply, "CopiesPerUser", c->copies_per_user);
        if (r >= 0)
                r = append_limit(reply, "PidsLimit", c->pids_limit);
        if (r >= 0)
                r = append_limit(reply, "Memory", c->memory);
        if (r >= 0)
                r = append_limit(reply, "CPUWeight", c->cpu_weight);
        if (r >= 0)
                r = append_limit(reply, "TmpfsMaxSize", c->tmpfs_max_size);
        for (int i = 0; i < 4 && r >= 0; i++) /* the a{st}, the variant, the entry, the a{sv} */
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_version(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                                sd_bus_message *reply, G_GNUC_UNUSED void *userdata,
                                G_GNUC_UNUSED sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", KILN_VERSION);
}

static int property_get_default_runtime(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                        G_GNUC_UNUSED const char *interface,
                                        G_GNUC_UNUSED const char *property, sd_bus_message *reply,
                                        void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;

        return sd_bus_message_append(reply, "s", manager->runtimes[0] ? manager->runtimes[0] : "");
}

static int property_get_runtimes(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                 G_GNUC_UNUSED const char *interface, G_GNUC_UNUSED const char *property,
                                 sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;

        return sd_bus_message_append_strv(reply, manager->runtimes);
}

static int property_get_default_isolation(G_GNUC_UNUSED sd_bus *bus, G_GNUC_UNUSED const char *path,
                                          G_GNUC_UNUSED const char *interface,
                                          G_GNUC_UNUSED const char *property, sd_bus_message *reply,
                                          void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        KilnManager *manager = userdata;

        return sd_bus_message_append(reply, "s", manager->config->default_isolation);
}

/* ---- run parity: RemoveCaches ---- */
/* The caller's own type=cache caches (run/run-caches.h), and only those: no polkit action, as nothing of
 * anyone else's can be named (the owner is the caller's uid, the ids are names). */
static int method_remove_caches(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        KilnManager *manager = userdata;
        g_autoptr(GError) local = NULL;
        g_auto(GStrv) ids = NULL, removed = NULL, busy = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const KilnCreds *creds;
        int r;

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                return r;
        if (!kiln_bus_read_strv(m, "ids", NULL, manager->config, &ids, &local) ||
            !kiln_run_caches_remove(manager->caches, creds->uid, (const char *const *)ids, &removed, &busy,
                                    &local))
                return kiln_error_to_bus(local, error);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_strv(reply, removed);
        if (r >= 0)
                r = sd_bus_message_append_strv(reply, busy);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DefaultRuntime", "s", property_get_default_runtime, 0,
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Runtimes", "as", property_get_runtimes, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DefaultIsolation", "s", property_get_default_isolation, 0,
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("CreateBuilder", SD_BUS_ARGS("s", name, "s", from, "a{sv}", options),
                                SD_BUS_RESULT("o", builder), method_create_builder,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetBuilder", SD_BUS_ARGS("s", name_or_id), SD_BUS_RESULT("o", builder),
                                method_get_builder, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListBuilders", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ssuso)", builders),
                                method_list_builders, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetInfo", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", info), method_get_info,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveCaches", SD_BUS_ARGS("as", ids),
                                SD_BUS_RESULT("as", removed, "as", busy), method_remove_caches,
                                SD_BUS_VTABLE_UNPRIVILEGED), /* run parity */
        SD_BUS_SIGNAL_WITH_ARGS("ImportProgress",
                                SD_BUS_ARGS("s", token, "u", layer, "u", layers, "t", bytes, "t", total), 0),
        SD_BUS_VTABLE_END,
};

int kiln_manager_register(KilnManager *m)
{
        int r;

        /* From now on the registry's changes reach the bus, through the faces. */
        m->hooks = (KilnManagerHooks){
                .builder_added = kiln_builder_emit_added,
                .builder_removed = kiln_builder_emit_removed,
                .builder_processes_changed = kiln_builder_processes_changed,
                .count_running = kiln_process_count_running,
        };
        kiln_process_manager_init(m);
        r = sd_bus_add_object_manager(m->bus, &m->slots[0], KILN_MANAGER_PATH);
        if (r >= 0)
                r = sd_bus_add_object_vtable(m->bus, &m->slots[1], KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE,
                                             manager_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &m->slots[2], KILN_BUILDER_PATH_PREFIX,
                                               KILN_BUILDER_INTERFACE, kiln_builder_vtable,
                                               kiln_builder_object_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, &m->slots[3], KILN_BUILDER_PATH_PREFIX,
                                               kiln_builder_node_enumerator, m);
        if (r >= 0)
                r = kiln_process_register(m);
        /* Floating: lives as long as the connection. */
        if (r >= 0)
                r = sd_bus_add_filter(m->bus, NULL, filter_managed_objects, m);
        return r;
}
