/* SPDX-License-Identifier: Apache-2.0 */
/* Builder.Copy and Builder.CopyOut on the bus: arguments, authorization (org.kiln.builder1.run, on the
 * caller's own builder), the builder's root file system held while the copy's thread works
 * (copy/copy.h), the reply when it ends. The methods are declared in builder-dbus.h. */
#include <fcntl.h>
#include <string.h>

#include "base/archive-load.h"
#include "bus/bus-args.h"
#include "objects/builder-dbus.h"
#include "copy/copy.h"
#include "objects/manager.h"

/* Main thread only: copies in progress per caller uid ([Limits] CopiesPerUser) and per builder id. */
static GHashTable *copies_per_uid;
static GHashTable *copies_per_builder;

static guint count_of(GHashTable *table, gconstpointer key)
{
        return table ? GPOINTER_TO_UINT(g_hash_table_lookup(table, key)) : 0;
}

static void count_add(GHashTable **table, GHashFunc hash, GEqualFunc equal, GDestroyNotify key_free,
                      gpointer key, int delta)
{
        guint n;

        if (!*table)
                *table = g_hash_table_new_full(hash, equal, key_free, NULL);
        n = count_of(*table, key) + (guint)delta;
        if (n == 0)
                g_hash_table_remove(*table, key);
        else
                g_hash_table_replace(*table, key_free ? g_strdup(key) : key, GUINT_TO_POINTER(n));
}

guint kiln_copy_count_for_builder(const char *id)
{
        return count_of(copies_per_builder, id);
}

static void uid_slot(uid_t uid, int delta)
{
        count_add(&copies_per_uid, g_direct_hash, g_direct_equal, NULL, GUINT_TO_POINTER(uid), delta);
}

static void builder_hold(const char *id, int delta)
{
        count_add(&copies_per_builder, g_str_hash, g_str_equal, g_free, (gpointer)id, delta);
}

typedef struct {
        KilnManager *manager;
        char *builder_id;
        uid_t caller_uid;
        gboolean out;      /* CopyOut */
        gboolean reserved; /* holds one of caller_uid's CopiesPerUser slots */
        gboolean holds_rootfs;
        gboolean holds_builder;
        sd_bus_message *call;
        GCancellable *cancellable;
        GError *error; /* the thread's outcome */
        KilnCopyIn in;
        KilnCopyOut copy_out;
} CopyRequest;

static CopyRequest *copy_request_new(KilnManager *manager, const char *builder_id, gboolean out)
{
        CopyRequest *req = g_new0(CopyRequest, 1);

        req->manager = manager;
        req->builder_id = g_strdup(builder_id);
        req->out = out;
        req->in.stream_fd = req->in.root_fd = -1;
        req->copy_out.root_fd = req->copy_out.out_fd = -1;
        return req;
}

static void copy_request_free(gpointer data)
{
        CopyRequest *req = data;
        KilnBuilder *b = g_hash_table_lookup(req->manager->builders, req->builder_id);

        /* The descriptors first (the mount may go when the root is let go). */
        kiln_copy_in_clear(&req->in);
        kiln_copy_out_clear(&req->copy_out);
        if (req->holds_rootfs && b)
                kiln_manager_release_rootfs(req->manager, b);
        if (req->holds_builder)
                builder_hold(req->builder_id, -1);
        if (req->reserved)
                uid_slot(req->caller_uid, -1);
        if (req->call)
                sd_bus_message_unref(req->call);
        g_clear_object(&req->cancellable);
        g_clear_error(&req->error);
        g_free(req->builder_id);
        g_free(req);
}

/* Back on the main loop: the thread has ended and touches nothing of @req any more. */
static gboolean copy_finished(gpointer data)
{
        CopyRequest *req = data;

        if (req->error) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                if (!g_error_matches(req->error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
                        kiln_error_to_bus(req->error, &error);
                        sd_bus_reply_method_error(req->call, &error);
                }
                /* Cancelled: the caller has left, nobody to answer. */
        } else {
                sd_bus_reply_method_return(req->call, NULL);
        }
        copy_request_free(req);
        return G_SOURCE_REMOVE;
}

static gpointer copy_thread(gpointer data)
{
        CopyRequest *req = data;

        if (req->out)
                (void)kiln_copy_out_run(&req->copy_out, req->cancellable, &req->error);
        else
                (void)kiln_copy_in_run(&req->in, req->cancellable, &req->error);
        /* The caller's descriptor is closed here, on the thread: the client sees the end of the stream
         * (or that nobody reads any more) as soon as the work is over. */
        kiln_close_fdp(req->out ? &req->copy_out.out_fd : &req->in.stream_fd);
        g_idle_add(copy_finished, req);
        return NULL;
}

/* A relative path is taken from the builder's WorkingDir, as buildah copy does. */
static void make_absolute(const KilnBuilder *b, char **path)
{
        char *joined;

        if (g_path_is_absolute(*path))
                return;
        joined = g_build_filename(b->config.working_dir ? b->config.working_dir : "/", *path, NULL);
        g_free(*path);
        *path = joined;
}

static void copy_authorized(sd_bus_message *m, const sd_bus_error *denied, gpointer data)
{
        CopyRequest *pending = data, *req;
        g_autoptr(GError) local = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_auto(KilnIdMaps) maps = {0};
        g_autofree char *root = NULL;
        g_autoptr(GThread) thread = NULL;
        KilnManager *manager = pending->manager;
        KilnBuilder *b;
        gboolean mapped;
        int root_fd;

        if (denied) {
                sd_bus_reply_method_error(m, denied);
                return;
        }
        /* The builder may have been removed while polkit was asked. */
        b = g_hash_table_lookup(manager->builders, pending->builder_id);
        if (!b || b->pending_remove) {
                sd_bus_reply_method_errorf(m, KILN_ERROR_NOT_FOUND, "Builder %s was removed",
                                           pending->builder_id);
                return;
        }

        /* Everything moves to a request the thread owns; @pending is freed by the authorization. */
        req = copy_request_new(manager, pending->builder_id, pending->out);
        req->caller_uid = pending->caller_uid;
        req->reserved = pending->reserved;
        pending->reserved = FALSE;
        req->in = pending->in;
        req->copy_out = pending->copy_out;
        pending->in = (KilnCopyIn){.stream_fd = -1, .root_fd = -1};
        pending->copy_out = (KilnCopyOut){.root_fd = -1, .out_fd = -1};
        req->call = sd_bus_message_ref(m);
        req->cancellable = kiln_auth_caller_cancellable(manager->auth, m);

        /* Mounted as the builder's runs see it: with a user namespace, the layers ID-mapped, so that what
         * the copy writes through the maps is what a run reads. */
        mapped = g_strcmp0(b->config.userns, "auto") == 0;
        if (mapped && !kiln_manager_id_maps(manager, b->owner, &maps, &local))
                goto fail;
        root = kiln_manager_acquire_rootfs(manager, b, mapped ? &maps : NULL, &local);
        if (!root)
                goto fail;
        req->holds_rootfs = TRUE;
        root_fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0) {
                local = g_error_new(KILN_ERROR, KILN_ERROR_CODE_FAILED,
                                    "Cannot open the root file system of %s", b->id);
                goto fail;
        }
        if (req->out) {
                req->copy_out.root_fd = root_fd;
        } else {
                req->in.root_fd = root_fd;
                if (mapped) {
                        req->in.uid_map = g_array_ref(maps.uid_map);
                        req->in.gid_map = g_array_ref(maps.gid_map);
                }
        }
        make_absolute(b, req->out ? &req->copy_out.path : &req->in.dest);
        builder_hold(req->builder_id, +1);
        req->holds_builder = TRUE;
        /* A thread of its own: the stream moves at the caller's pace, and the main loop (every other
         * caller) never waits for it. */
        thread = g_thread_try_new("kiln-copy", copy_thread, req, &local);
        if (!thread)
                goto fail;
        return;

fail:
        kiln_error_to_bus(local, &error);
        sd_bus_reply_method_error(m, &error);
        copy_request_free(req);
}

/* The a{sv} options of Copy (@in not NULL) or CopyOut (none yet). */
static gboolean read_options(sd_bus_message *m, KilnManager *manager, KilnCopyIn *in, GError **error)
{
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return kiln_bus_read_failed(r, "options", error);
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return kiln_bus_read_failed(r, "options", error);
                if (!kiln_check_array_limit("options", ++n, manager->config, error))
                        return FALSE;
                if (in && g_str_equal(key, "chown")) {
                        g_clear_pointer(&in->chown, g_free);
                        if (!kiln_bus_enter_variant(m, "chown", "s", error) ||
                            !kiln_bus_read_string(m, "chown", NULL, manager->config, &in->chown, error) ||
                            !kiln_bus_exit_variant(m, "chown", error))
                                return FALSE;
                } else if (in && g_str_equal(key, "chmod")) {
                        g_autofree char *text = NULL;

                        if (!kiln_bus_enter_variant(m, "chmod", "s", error) ||
                            !kiln_bus_read_string(m, "chmod", NULL, manager->config, &text, error) ||
                            !kiln_bus_exit_variant(m, "chmod", error) ||
                            !kiln_copy_parse_mode("chmod", text, &in->mode, error))
                                return FALSE;
                        in->has_mode = TRUE;
                } else if (in && g_str_equal(key, "as-file")) {
                        int value;

                        if (!kiln_bus_enter_variant(m, "as-file", "b", error))
                                return FALSE;
                        r = sd_bus_message_read_basic(m, 'b', &value);
                        if (r < 0)
                                return kiln_bus_read_failed(r, "as-file", error);
                        if (!kiln_bus_exit_variant(m, "as-file", error))
                                return FALSE;
                        in->as_file = value != 0;
                } else {
                        return kiln_invalid(error, "options", "unknown key '%.64s'", key);
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return kiln_bus_read_failed(r, "options", error);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, "options", error);
        return TRUE;
}

static gboolean read_path(sd_bus_message *m, const char *arg, KilnManager *manager, char **ret,
                          GError **error)
{
        if (!kiln_bus_read_string(m, arg, NULL, manager->config, ret, error))
                return FALSE;
        if (!**ret)
                return kiln_invalid(error, arg, "the path is empty");
        return TRUE;
}

static int start_copy(sd_bus_message *m, KilnBuilder *b, gboolean out, sd_bus_error *error)
{
        KilnManager *manager = b->manager;
        CopyRequest *req = copy_request_new(manager, b->id, out);
        g_autoptr(GError) local = NULL;
        const char *details[] = {"builder", b->name, NULL};
        const KilnCreds *creds;
        int fd, r;

        r = kiln_auth_get_caller(manager->auth, m, &creds, error);
        if (r < 0)
                goto fail;
        req->caller_uid = creds->uid;
        if (out) {
                if (!read_path(m, "path", manager, &req->copy_out.path, &local))
                        goto fail_local;
                r = sd_bus_message_read_basic(m, 'h', &fd);
                if (r < 0) {
                        kiln_bus_read_failed(r, "fd", &local);
                        goto fail_local;
                }
                req->copy_out.out_fd = kiln_copy_take_fd("fd", fd, TRUE, &local);
                if (req->copy_out.out_fd < 0 || !read_options(m, manager, NULL, &local))
                        goto fail_local;
                req->copy_out.limits =
                        (KilnCopyLimits){manager->config->copy_bytes, manager->config->copy_entries};
        } else {
                r = sd_bus_message_read_basic(m, 'h', &fd);
                if (r < 0) {
                        kiln_bus_read_failed(r, "source", &local);
                        goto fail_local;
                }
                req->in.stream_fd = kiln_copy_take_fd("source", fd, FALSE, &local);
                if (req->in.stream_fd < 0 || !read_path(m, "destination", manager, &req->in.dest, &local) ||
                    !read_options(m, manager, &req->in, &local))
                        goto fail_local;
                req->in.limits =
                        (KilnCopyLimits){manager->config->copy_bytes, manager->config->copy_entries};
        }
        if (!kiln_archive_load(&local))
                goto fail_local;
        if (b->pending_remove) {
                r = sd_bus_error_setf(error, KILN_ERROR_BUSY, "Builder '%s' is being removed", b->name);
                goto fail;
        }
        /* The slot is taken before polkit is asked: the count includes every call still being
         * authorized. */
        if (count_of(copies_per_uid, GUINT_TO_POINTER(req->caller_uid)) >=
            manager->config->copies_per_user) {
                r = sd_bus_error_setf(
                        error, KILN_ERROR_LIMIT_EXCEEDED,
                        "Too many copies in progress: at most %u per user ([Limits] CopiesPerUser)",
                        manager->config->copies_per_user);
                goto fail;
        }
        uid_slot(req->caller_uid, +1);
        req->reserved = TRUE;
        return kiln_auth_check_method(manager->auth, m, details, copy_authorized, req, copy_request_free);

fail_local:
        r = kiln_error_to_bus(local, error);
fail:
        copy_request_free(req);
        return r;
}

int kiln_copy_method_copy(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return start_copy(m, userdata, FALSE, error);
}

int kiln_copy_method_copy_out(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return start_copy(m, userdata, TRUE, error);
}
