/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>

#include "base/archive-load.h"
#include "bus/bus-args.h"
#include "import/layer-digest.h"
#include "objects/builder-dbus.h"
#include "objects/image-dbus-private.h"
#include "objects/process.h"

/* Builder.Commit: checked, authorized (create, as DESIGN.md's table says), then the layers are written
 * by a thread from descriptors; the image is recorded and exported back on the main thread. */

typedef struct {
        KilnManager *manager;
        sd_bus_message *message;
        char *builder_id;
        char *builder_name;
        uid_t caller_uid;
        char *name; /* normalized, or NULL */
        char *compression_name;
        char *format;
        guint64 timestamp;
        gboolean has_timestamp;
        gboolean squash;
        KilnCompression compression;
        guint64 config_bytes_max; /* [Limits] ImageConfigBytes */

        /* for the thread */
        char *upper_path;    /* the builder's overlay upper dir, or its mounted root with squash */
        char **base_paths;   /* the base layers' directories, bottom first (none: scratch, squash) */
        char **base_digests; /* their digests in the layer store */
        char *base_history;  /* the base image's history (a JSON array), or NULL */
        char *os, *architecture;
        char *stop_signal;
        char **exposed_ports;
        gboolean base_shifted;
        GArray *uid_map; /* host → container for the new layer (NULL: as they are) */
        GArray *gid_map;
        gboolean rootfs_held; /* squash: the builder's root is held mounted */
        char **env, **entrypoint, **cmd, **labels, **volumes;
        char *working_dir, *user, *from;
        gint64 created;

        /* results */
        GPtrArray *layers;
        char *config_json;
        char *config_digest;
        char *manifest_digest;
        guint64 manifest_size;
} CommitJob;

static void commit_job_free(gpointer data)
{
        CommitJob *job = data;

        if (job->rootfs_held) {
                KilnBuilder *b = g_hash_table_lookup(job->manager->builders, job->builder_id);
                if (b)
                        kiln_manager_release_rootfs(job->manager, b);
        }
        if (job->message)
                sd_bus_message_unref(job->message);
        g_free(job->builder_id);
        g_free(job->builder_name);
        g_free(job->name);
        g_free(job->compression_name);
        g_free(job->format);
        g_free(job->upper_path);
        g_strfreev(job->base_paths);
        g_strfreev(job->base_digests);
        g_free(job->base_history);
        g_free(job->os);
        g_free(job->architecture);
        g_free(job->stop_signal);
        g_strfreev(job->exposed_ports);
        g_clear_pointer(&job->uid_map, g_array_unref);
        g_clear_pointer(&job->gid_map, g_array_unref);
        g_strfreev(job->env);
        g_strfreev(job->entrypoint);
        g_strfreev(job->cmd);
        g_strfreev(job->labels);
        g_strfreev(job->volumes);
        g_free(job->working_dir);
        g_free(job->user);
        g_free(job->from);
        g_clear_pointer(&job->layers, g_ptr_array_unref);
        g_free(job->config_json);
        g_free(job->config_digest);
        g_free(job->manifest_digest);
        g_free(job);
}

static int open_tree(const char *path, GError **error)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot open '%s': %s", path,
                            g_strerror(errno));
        return fd;
}

/* Writes the tree at @path as a layer blob. */
static KilnImageLayer *write_layer(KilnImageStore *store, const char *path, const KilnLayerWriteOptions *o,
                                   GCancellable *cancellable, GError **error)
{
        _cleanup_close_ int root = open_tree(path, error);
        _cleanup_close_ int out = -1;
        KilnLayerWriteResult res = {0};
        KilnImageLayer *l;
        g_autofree char *digest = NULL;

        if (root < 0 || (out = kiln_image_store_tmpfile(store, error)) < 0)
                return NULL;
        if (!kiln_layer_write(root, out, o, &res, cancellable, error))
                return NULL;
        digest = g_strconcat("sha256:", res.blob_digest, NULL);
        if (!kiln_image_store_link_blob(store, out, digest, error))
                return NULL;
        l = g_new0(KilnImageLayer, 1);
        l->digest = g_steal_pointer(&digest);
        l->diff_id = g_strconcat("sha256:", res.diff_id, NULL);
        l->size = res.blob_size;
        l->tar_size = res.tar_size;
        l->compression = o->compression;
        return l;
}

static void commit_thread(GTask *task, G_GNUC_UNUSED gpointer source, gpointer data,
                          GCancellable *cancellable)
{
        CommitJob *job = data;
        KilnImageStore *store = job->manager->images->store;
        g_autoptr(GPtrArray) layers = g_ptr_array_new_with_free_func(kiln_image_layer_free);
        g_autoptr(GPtrArray) diff_ids = g_ptr_array_new();
        g_autoptr(GPtrArray) history = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *manifest = NULL;
        GError *error = NULL;
        KilnImageLayer *l;
        /* Stored as tar: a commit costs one pass over the files and one hash; the compression the image
         * asks for is made when it is first pushed (image-store.c). */
        KilnLayerWriteOptions o = {.compression = KILN_COMPRESSION_NONE, .clamp_mtime = -1};

        for (guint i = 0; job->base_paths && job->base_paths[i]; i++) {
                /* Each base layer as stored (owners already the container's unless it is a shifted copy);
                 * written once per layer and compression, reused by every later commit on it. */
                l = kiln_image_store_lookup_base(store, job->base_digests[i], KILN_COMPRESSION_NONE);
                if (!l) {
                        if (job->base_shifted && job->uid_map) {
                                o.uid_map = (KilnIdMapping *)job->uid_map->data;
                                o.n_uid_map = job->uid_map->len;
                                o.gid_map = (KilnIdMapping *)job->gid_map->data;
                                o.n_gid_map = job->gid_map->len;
                        }
                        l = write_layer(store, job->base_paths[i], &o, cancellable, &error);
                        if (!l) {
                                g_prefix_error(&error, "Cannot write the base layer: ");
                                g_task_return_error(task, error);
                                return;
                        }
                        kiln_image_store_remember_base(store, job->base_digests[i], l);
                }
                g_ptr_array_add(layers, l);
                /* A base image brings its own history; a directory's layer gets one entry. */
                if (!job->base_history)
                        g_ptr_array_add(history, g_strdup_printf("kiln from %s", job->from));
        }
        o.uid_map = job->uid_map ? (KilnIdMapping *)job->uid_map->data : NULL;
        o.n_uid_map = job->uid_map ? job->uid_map->len : 0;
        o.gid_map = job->gid_map ? (KilnIdMapping *)job->gid_map->data : NULL;
        o.n_gid_map = job->gid_map ? job->gid_map->len : 0;
        o.clamp_mtime = job->has_timestamp ? (gint64)job->timestamp : -1;
        l = write_layer(store, job->upper_path, &o, cancellable, &error);
        if (!l) {
                g_prefix_error(&error, "Cannot write the builder's layer: ");
                g_task_return_error(task, error);
                return;
        }
        g_ptr_array_add(layers, l);
        g_ptr_array_add(history, g_strdup_printf(job->squash ? "kiln commit --squash %s" : "kiln commit %s",
                                                 job->builder_name));

        for (guint i = 0; i < layers->len; i++)
                g_ptr_array_add(diff_ids, ((KilnImageLayer *)layers->pdata[i])->diff_id);
        g_ptr_array_add(diff_ids, NULL);
        g_ptr_array_add(history, NULL);
        {
                KilnImageConfigInput in = {
                        .env = (const char *const *)job->env,
                        .entrypoint = (const char *const *)job->entrypoint,
                        .cmd = (const char *const *)job->cmd,
                        .working_dir = job->working_dir,
                        .user = job->user,
                        .labels = (const char *const *)job->labels,
                        .volumes = (const char *const *)job->volumes,
                        .stop_signal = job->stop_signal,
                        .exposed_ports = (const char *const *)job->exposed_ports,
                        .created = job->created,
                        .diff_ids = (const char *const *)diff_ids->pdata,
                        .base_history = job->base_history,
                        .history_created_by = (const char *const *)history->pdata,
                        .os = job->os,
                        .architecture = job->architecture,
                };
                job->config_json = kiln_image_config_json(&in);
        }
        /* kilnd keeps every image's config in memory and lists it whole: a builder's configuration (up to
         * MaxArrayLength x MaxStringLength a field) or a base image's history must not make it hold more
         * per image than ImageConfigBytes. The layers written are collected with the failed commit. */
        if (strlen(job->config_json) > job->config_bytes_max) {
                g_set_error(
                        &error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                        "The image config would be %zu bytes, past ImageConfigBytes (%" G_GUINT64_FORMAT
                        "): the builder's Env, Labels, Cmd, ... or the base image's history are too large",
                        strlen(job->config_json), job->config_bytes_max);
                goto fail;
        }
        if (!kiln_image_store_put_blob(store, job->config_json, strlen(job->config_json),
                                       &job->config_digest, &error))
                goto fail;
        manifest =
                kiln_image_manifest_json(job->format, job->config_digest, strlen(job->config_json), layers);
        job->manifest_size = strlen(manifest);
        if (!kiln_image_store_put_blob(store, manifest, job->manifest_size, &job->manifest_digest, &error))
                goto fail;
        job->layers = g_steal_pointer(&layers);
        g_task_return_boolean(task, TRUE);
        return;
fail:
        g_task_return_error(task, error);
}

static gboolean over_storage(KilnManager *m, uid_t uid, GError **error)
{
        guint64 limit = m->config->storage_bytes_per_user;
        guint64 used;

        if (uid == 0 || limit == G_MAXUINT64)
                return FALSE;
        used = kiln_manager_user_storage_bytes(m, uid);
        if (used <= limit)
                return FALSE;
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                    "User %u would keep %" G_GUINT64_FORMAT
                    " bytes of layers, images and caches, past StorageBytesPerUser "
                    "(%" G_GUINT64_FORMAT ")",
                    (unsigned)uid, used, limit);
        return TRUE;
}

static void commit_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        CommitJob *job = data;
        KilnManager *m = job->manager;
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnImage) fresh = NULL;
        g_autofree char *id = NULL;
        KilnImage *image;
        guint64 size = 0;

        m->images->commits--;
        if (!g_task_propagate_boolean(G_TASK(result), &error))
                goto fail;
        id = kiln_image_id_for(job->caller_uid, job->config_digest);
        image = g_hash_table_lookup(m->images->by_id, id);
        if (!image) {
                if (job->caller_uid != 0 &&
                    kiln_images_count_owned(m->images, job->caller_uid) >= m->config->images_per_user) {
                        g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                    "User %u already has the limit of %u images (ImagesPerUser)",
                                    (unsigned)job->caller_uid, m->config->images_per_user);
                        goto fail;
                }
                fresh = g_new0(KilnImage, 1);
                fresh->id = g_steal_pointer(&id);
                fresh->names = g_new0(char *, 1);
                fresh->owner = job->caller_uid;
                fresh->created_usec = job->created * G_USEC_PER_SEC;
                fresh->format = g_strdup(job->format);
                fresh->compression = job->compression;
                fresh->manifest_digest = g_strdup(job->manifest_digest);
                fresh->config_digest = g_strdup(job->config_digest);
                fresh->layers = g_steal_pointer(&job->layers);
                fresh->config_json = g_steal_pointer(&job->config_json);
                for (guint i = 0; i < fresh->layers->len; i++)
                        size += ((KilnImageLayer *)fresh->layers->pdata[i])->size;
                fresh->size = size + job->manifest_size + strlen(fresh->config_json);
                if (job->name)
                        kiln_images_take_name(m, fresh, job->name);
                if (!kiln_image_store_save(m->images->store, fresh, &error)) {
                        error->domain = KILN_ERROR;
                        error->code = KILN_ERROR_CODE_FAILED;
                        goto fail;
                }
                image = g_steal_pointer(&fresh);
                kiln_images_add(m, image);
                if (over_storage(m, job->caller_uid, &error)) {
                        (void)kiln_image_store_remove(m->images->store, image->id, NULL);
                        g_hash_table_remove(m->images->by_id, image->id);
                        goto fail;
                }
                kiln_images_emit(m, image, IMAGE_ADDED);
        } else if (job->name && !kiln_image_has_name(image, job->name)) {
                /* The same builder committed again gives the same image: it gets the new name too, within
                 * the bound Tag keeps (else names would grow without one, commit after commit). */
                if (image->names && g_strv_length(image->names) >= m->config->max_array_length) {
                        g_set_error(&error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                    "Invalid image_name: image %.12s already has %u names, the limit "
                                    "(MaxArrayLength)",
                                    image->id, m->config->max_array_length);
                        goto fail;
                }
                kiln_images_take_name(m, image, job->name);
                if (!kiln_image_store_save(m->images->store, image, &error)) {
                        error->domain = KILN_ERROR;
                        error->code = KILN_ERROR_CODE_FAILED;
                        goto fail;
                }
                kiln_images_emit(m, image, IMAGE_NAMES_CHANGED);
        }
        sd_bus_reply_method_return(job->message, "o", image->object_path);
        if (m->images->collect_pending)
                kiln_images_collect(m->images);
        commit_job_free(job);
        return;
fail:
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                kiln_images_reply_error(job->message, error);
        kiln_images_collect(m->images);
        commit_job_free(job);
}

/* What a builder made from an image keeps of it for a commit (objects/manager-dbus.c): its history, its
 * Volumes (the image's; the builder's own volumes are bind mounts of a run, not the image's), its
 * platform. */
static void read_base_image(CommitJob *job, const char *image_json)
{
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(GPtrArray) volumes = g_ptr_array_new();
        JsonObject *o;
        JsonNode *n;

        if (!image_json || !json_parser_load_from_data(p, image_json, -1, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
                return;
        o = json_node_get_object(json_parser_get_root(p));
        n = json_object_get_member(o, "history");
        if (n && JSON_NODE_HOLDS_ARRAY(n))
                job->base_history = json_to_string(n, FALSE);
        n = json_object_get_member(o, "Volumes");
        if (n && JSON_NODE_HOLDS_OBJECT(n)) {
                g_autoptr(GList) keys = json_object_get_members(json_node_get_object(n));
                for (GList *k = keys; k; k = k->next)
                        g_ptr_array_add(volumes, g_strdup(k->data));
                g_ptr_array_add(volumes, NULL);
                job->volumes = (char **)g_ptr_array_free(g_steal_pointer(&volumes), FALSE);
        }
        if ((n = json_object_get_member(o, "os")) && JSON_NODE_HOLDS_VALUE(n) &&
            json_node_get_value_type(n) == G_TYPE_STRING)
                job->os = g_strdup(json_node_get_string(n));
        if ((n = json_object_get_member(o, "architecture")) && JSON_NODE_HOLDS_VALUE(n) &&
            json_node_get_value_type(n) == G_TYPE_STRING)
                job->architecture = g_strdup(json_node_get_string(n));
}

static void commit_authorized(sd_bus_message *msg, const sd_bus_error *denied, gpointer data)
{
        CommitJob *req = data, *job;
        KilnManager *m = req->manager;
        g_autoptr(GError) error = NULL;
        g_autofree char *empty = kiln_layer_empty_digest();
        g_autofree char *builder_dir = NULL;
        g_auto(KilnIdMaps) maps = {0};
        gboolean mapped;
        KilnBuilder *b;
        GTask *task;

        if (denied) {
                sd_bus_reply_method_error(msg, denied);
                return;
        }
        b = g_hash_table_lookup(m->builders, req->builder_id);
        if (!b || b->pending_remove) {
                sd_bus_reply_method_errorf(msg, KILN_ERROR_NOT_FOUND, "Builder %s was removed",
                                           req->builder_id);
                return;
        }
        if (kiln_process_count_running(m, b->id, 0) > 0) {
                sd_bus_reply_method_errorf(
                        msg, KILN_ERROR_BUSY,
                        "Builder '%s' has running processes: commit it when they have ended", b->name);
                return;
        }
        job = g_new0(CommitJob, 1);
        *job = *req;
        memset(req, 0, sizeof(*req)); /* everything moved to the job */
        req->manager = m;
        job->message = sd_bus_message_ref(msg);

        /* The owners in the builder's upper dir are host ids: a user-namespace builder's go back through its
         * owner's maps (the ones its runs had). */
        mapped = g_strcmp0(b->config.userns, "auto") == 0;
        if (mapped) {
                if (!kiln_manager_id_maps(m, b->owner, &maps, &error))
                        goto fail;
                job->uid_map = g_array_ref(maps.uid_map);
                job->gid_map = g_array_ref(maps.gid_map);
        }
        builder_dir = kiln_storage_builder_dir(m->storage, b->id);
        if (job->squash) {
                /* The merged tree, as a run sees it: mounted with the owner's maps when mapped, so that
                 * every owner is a host id that the same maps take back. */
                char *root = kiln_manager_acquire_rootfs(m, b, mapped ? &maps : NULL, &error);
                if (!root)
                        goto fail;
                job->rootfs_held = TRUE;
                job->upper_path = root;
        } else {
                job->upper_path = g_build_filename(builder_dir, "upper", NULL);
                g_autoptr(GPtrArray) paths = g_ptr_array_new();
                g_autoptr(GPtrArray) digests = g_ptr_array_new();
                const char *single[] = {b->layer, NULL};
                for (char *const *l = b->layers ? b->layers : (char **)single; *l; l++) {
                        if (g_str_equal(*l, empty))
                                continue; /* scratch: an image of no layer */
                        g_ptr_array_add(paths, g_build_filename(m->config->state_dir, "layers", *l, NULL));
                        g_ptr_array_add(digests, g_strdup(*l));
                }
                g_ptr_array_add(paths, NULL);
                g_ptr_array_add(digests, NULL);
                job->base_paths = (char **)g_ptr_array_free(g_steal_pointer(&paths), FALSE);
                job->base_digests = (char **)g_ptr_array_free(g_steal_pointer(&digests), FALSE);
                job->base_shifted = b->layer_shifted;
        }
        read_base_image(job, b->image);
        job->builder_name = g_strdup(b->name);
        job->from = g_strdup(b->from);
        job->env = g_strdupv(b->config.env);
        job->entrypoint = g_strdupv(b->config.entrypoint);
        job->cmd = g_strdupv(b->config.cmd);
        job->labels = g_strdupv(b->config.labels);
        job->stop_signal = g_strdup(b->config.stop_signal);
        job->exposed_ports = g_strdupv(b->config.exposed_ports);
        job->working_dir = g_strdup(b->config.working_dir);
        job->user = g_strdup(b->config.user);
        job->created = job->has_timestamp ? (gint64)job->timestamp : g_get_real_time() / G_USEC_PER_SEC;

        m->images->commits++;
        task = g_task_new(NULL, NULL, commit_done, job);
        g_task_set_task_data(task, job, NULL);
        g_task_run_in_thread(task, commit_thread);
        g_object_unref(task);
        return;
fail:
        kiln_images_reply_error(msg, error);
        commit_job_free(job);
}

static void commit_request_free(gpointer data)
{
        commit_job_free(data);
}

static int method_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        KilnBuilder *b = userdata;
        KilnManager *m = b->manager;
        g_autoptr(GError) local = NULL;
        const KilnCreds *creds;
        const char *name;
        const char *details[] = {"builder", b->name, "image", NULL, NULL};
        CommitJob *req;
        int r;

        r = kiln_auth_get_caller(m->auth, msg, &creds, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        if (!kiln_archive_load(&local))
                return kiln_error_to_bus(local, error);
        req = g_new0(CommitJob, 1);
        req->manager = m;
        req->caller_uid = creds->uid;
        req->builder_id = g_strdup(b->id);
        req->config_bytes_max = m->config->image_config_bytes;
        {
                OptionSlot slots[] = {
                        {"timestamp", 't', &req->timestamp, &req->has_timestamp},
                        {"squash", 'b', &req->squash},
                        {"compression", 's', &req->compression_name},
                        {"format", 's', &req->format},
                };
                if (!kiln_images_read_options(msg, m->config, slots, G_N_ELEMENTS(slots), &local))
                        goto fail;
        }
        if (!kiln_check_string_limit("image_name", name, m->config, &local))
                goto fail;
        if (*name && !(req->name = kiln_image_normalize_name("image_name", name, &local)))
                goto fail;
        if (!req->compression_name)
                req->compression_name = g_strdup("gzip");
        if (!kiln_compression_from_string(req->compression_name, &req->compression)) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid compression: '%.64s' is not 'gzip', 'zstd' or 'none'",
                          req->compression_name);
                goto fail;
        }
        if (!req->format)
                req->format = g_strdup("oci");
        if (!g_str_equal(req->format, "oci") && !g_str_equal(req->format, "docker")) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid format: '%.64s' is not 'oci' or 'docker'", req->format);
                goto fail;
        }
        if (g_str_equal(req->format, "docker") && req->compression == KILN_COMPRESSION_ZSTD) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid compression: 'zstd' layers have no docker media type (use format 'oci')");
                goto fail;
        }
        if (req->timestamp > (guint64)G_MAXINT64 / G_USEC_PER_SEC) {
                kiln_fail(&local, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid timestamp: too far in the future");
                goto fail;
        }
        if (b->pending_remove) {
                kiln_fail(&local, KILN_ERROR_CODE_BUSY, "Builder '%s' is being removed", b->name);
                goto fail;
        }
        if (kiln_process_count_running(m, b->id, 0) > 0) {
                kiln_fail(&local, KILN_ERROR_CODE_BUSY,
                          "Builder '%s' has running processes: commit it when they have ended", b->name);
                goto fail;
        }
        if (creds->uid != 0 &&
            kiln_images_count_owned(m->images, creds->uid) >= m->config->images_per_user) {
                kiln_fail(&local, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                          "User %u already has the limit of %u images (ImagesPerUser)", (unsigned)creds->uid,
                          m->config->images_per_user);
                goto fail;
        }
        if (over_storage(m, creds->uid, &local))
                goto fail;
        details[3] = req->name ? req->name : "(no name)";
        return kiln_auth_check(m->auth, msg, KILN_ACTION_CREATE, details, commit_authorized, req,
                               commit_request_free);
fail:
        commit_job_free(req);
        return kiln_error_to_bus(local, error);
}

const sd_bus_vtable kiln_builder_commit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Commit", SD_BUS_ARGS("s", image_name, "a{sv}", options),
                                SD_BUS_RESULT("o", image), method_commit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};
