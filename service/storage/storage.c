/* SPDX-License-Identifier: Apache-2.0 */
/* Storage: content-addressed read-only layers and per-builder overlays (see storage.h).
 *
 * Everything runs as root on names that callers influence, so:
 *   - ids and digests are checked to be 64 lowercase hex characters before they become part of a
 *     path: nothing a caller sends can turn into "..", a "/" or an empty name;
 *   - the three top directories are opened once, checked to be ours and 0700, and everything below
 *     them is reached with openat() from those descriptors, O_NOFOLLOW on the last component;
 *   - trees written by containers (a builder's upper dir) are removed with kiln_rm_rf_at, which never
 *     follows a symlink and never leaves the file system;
 *   - the caller's source tree is read only by kiln-import's unprivileged reader (import/). */
#include "storage/storage-private.h"
#include "base/fd-limit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>

#include "base/fs-util.h"
#include "import/layer-digest.h"
#include "import/records.h"
#include "base/kiln-common.h"
#include "storage/mount-idmap.h"
#include "base/reaper.h"

#define HELPER_NAME "kiln-import"
#define HELPER_KILL_TIMEOUT_SECONDS 10
#define HELPER_MESSAGE_MAX 1024
/* kiln-import bounds every document it reads to 4 MiB; what it prints of one stays below this. */
#define IMAGE_RESULT_MAX (8 * 1024 * 1024)

gboolean kiln_storage_errno_error(GError **error, int err, const char *syscall_name, const char *path)
{
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "%s '%s': %s", syscall_name, path,
                    g_strerror(err));
        return FALSE;
}

gboolean kiln_storage_check_id(const char *what, const char *value, GError **error)
{
        if (kiln_hex64_is_valid(value))
                return TRUE;
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid %s: expected %d lowercase hex characters", what, KILN_LAYER_DIGEST_LENGTH);
        return FALSE;
}

/* Creates (or finds) @name in @parent_fd as a directory owned by us with exactly @mode, and opens it. */
static int ensure_dir(int parent_fd, const char *name, const char *path, mode_t mode, GError **error)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (mkdirat(parent_fd, name, mode) < 0 && errno != EEXIST) {
                kiln_storage_errno_error(error, errno, "mkdirat", path);
                return -1;
        }
        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                kiln_storage_errno_error(error, errno, "openat", path);
                return -1;
        }
        if (fstat(fd, &st) < 0) {
                kiln_storage_errno_error(error, errno, "fstat", path);
                return -1;
        }
        /* Someone else's directory here could be swapped under us; refuse it. */
        if (st.st_uid != geteuid()) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "'%s' is owned by uid %u, not %u", path, (unsigned)st.st_uid,
                            (unsigned)geteuid());
                return -1;
        }
        if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0) {
                kiln_storage_errno_error(error, errno, "fchmod", path);
                return -1;
        }
        return kiln_steal_fd(&fd);
}

/* The configured top directory, created if missing, as a canonical path (mountinfo shows canonical
 * paths). */
static char *ensure_top_dir(const char *dir, GError **error)
{
        struct stat st;
        char *real;

        if (!dir || !g_path_is_absolute(dir)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "'%s' is not an absolute path",
                            dir ? dir : "(null)");
                return NULL;
        }
        if (g_mkdir_with_parents(dir, 0700) < 0) {
                kiln_storage_errno_error(error, errno, "mkdir", dir);
                return NULL;
        }
        real = realpath(dir, NULL);
        if (!real) {
                kiln_storage_errno_error(error, errno, "realpath", dir);
                return NULL;
        }
        /* Paths below it are handed to kiln-import and to umount2(): nobody else may rename in it. */
        if (stat(real, &st) < 0) {
                kiln_storage_errno_error(error, errno, "stat", real);
                free(real);
                return NULL;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 022)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "'%s' must be owned by uid %u and writable by nobody else", real,
                            (unsigned)geteuid());
                free(real);
                return NULL;
        }
        /* realpath() mallocs; hand out GLib memory */
        char *copy = g_strdup(real);
        free(real);
        return copy;
}

KilnStorage *kiln_storage_new(const char *state_dir, const char *runtime_dir, const char *helper_dir,
                              GError **error)
{
        g_autoptr(KilnStorage) s = g_new0(KilnStorage, 1);
        _cleanup_close_ int state_fd = -1, runtime_fd = -1;

        s->layers_fd = s->builders_fd = s->mounts_fd = s->bundles_fd = -1;
        s->import_bytes = G_MAXUINT64;
        s->image_bytes = G_MAXUINT64;
        s->layers_per_image = 128;
        s->entries_per_layer = 1000000;
        s->bytes_per_user = G_MAXUINT64;
        s->kept = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        s->sizes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        g_return_val_if_fail(helper_dir != NULL, NULL);

        s->state_dir = ensure_top_dir(state_dir, error);
        if (!s->state_dir)
                return NULL;
        s->runtime_dir = ensure_top_dir(runtime_dir, error);
        if (!s->runtime_dir)
                return NULL;
        s->helper_path = g_build_filename(helper_dir, HELPER_NAME, NULL);
        s->layers_dir = g_build_filename(s->state_dir, "layers", NULL);
        s->builders_dir = g_build_filename(s->state_dir, "builders", NULL);
        s->mounts_dir = g_build_filename(s->runtime_dir, "mounts", NULL);
        s->bundles_dir = g_build_filename(s->runtime_dir, "bundles", NULL);
        s->runtime_root = g_build_filename(s->runtime_dir, "runtime", NULL);
        s->isolate_root = g_build_filename(s->runtime_dir, "isolate", NULL);
        s->isolate_cache = g_build_filename(s->runtime_dir, "isolate-cache", NULL);

        state_fd = open(s->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (state_fd < 0) {
                kiln_storage_errno_error(error, errno, "open", s->state_dir);
                return NULL;
        }
        runtime_fd = open(s->runtime_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (runtime_fd < 0) {
                kiln_storage_errno_error(error, errno, "open", s->runtime_dir);
                return NULL;
        }

        s->layers_fd = ensure_dir(state_fd, "layers", s->layers_dir, 0700, error);
        if (s->layers_fd < 0)
                return NULL;
        s->builders_fd = ensure_dir(state_fd, "builders", s->builders_dir, 0700, error);
        if (s->builders_fd < 0)
                return NULL;
        s->mounts_fd = ensure_dir(runtime_fd, "mounts", s->mounts_dir, 0700, error);
        if (s->mounts_fd < 0)
                return NULL;
        s->bundles_fd = ensure_dir(runtime_fd, "bundles", s->bundles_dir, 0700, error);
        if (s->bundles_fd < 0)
                return NULL;
        {
                _cleanup_close_ int root_fd =
                        ensure_dir(runtime_fd, "runtime", s->runtime_root, 0700, error);
                _cleanup_close_ int isolate_fd =
                        root_fd < 0 ? -1 : ensure_dir(runtime_fd, "isolate", s->isolate_root, 0700, error);
                _cleanup_close_ int cache_fd = isolate_fd < 0 ? -1
                                                              : ensure_dir(runtime_fd, "isolate-cache",
                                                                           s->isolate_cache, 0700, error);
                if (cache_fd < 0)
                        return NULL;
        }

        return g_steal_pointer(&s);
}

void kiln_storage_free(KilnStorage *s)
{
        if (!s)
                return;
        g_clear_handle_id(&s->collect_idle, g_source_remove);
        g_clear_pointer(&s->kept, g_hash_table_unref);
        g_clear_pointer(&s->sizes, g_hash_table_unref);
        kiln_close_fdp(&s->layers_fd);
        kiln_close_fdp(&s->builders_fd);
        kiln_close_fdp(&s->mounts_fd);
        kiln_close_fdp(&s->bundles_fd);
        g_free(s->bundles_dir);
        g_free(s->runtime_root);
        g_free(s->isolate_root);
        g_free(s->isolate_cache);
        g_free(s->state_dir);
        g_free(s->runtime_dir);
        g_free(s->helper_path);
        g_free(s->layers_dir);
        g_free(s->builders_dir);
        g_free(s->mounts_dir);
        g_free(s);
}

/* ---- import ---- */

/* The bound of one import. */
typedef struct ImportBound {
        const char *name; /* the [Limits] key that decides */
        guint64 setting;  /* its value */
        guint64 max;      /* --max-bytes: what is left of it */
        guint64 in_use;   /* StorageBytesPerUser: the caller's bytes when the import started */
        uid_t uid;        /* the caller, bound by StorageBytesPerUser; 0: not */
} ImportBound;

typedef struct ImportState {
        KilnStorage *storage;
        gboolean busy; /* counted in storage->busy until the caller took the result */
        ImportBound bound;
        GSubprocess *proc;
        GCancellable *cancellable;
        gulong cancel_id;
        GMainContext *context;
        GMutex lock;
        GSource *kill_source; /* under lock */
        int progress_fd;      /* the read end of the helper's --progress-fd, or -1 */
        GSource *progress_source;
        KilnImportProgressFunc progress;
        gpointer progress_data;
} ImportState;

static void collect_soon(KilnStorage *s);
static guint64 layer_size(KilnStorage *s, const char *digest);
static guint64 layer_size_cb(const char *digest, gpointer data);

/* The helper's result is taken (or will never be): a layer it returned is now either used by a builder
 * or free to collect. */
static void import_state_release(ImportState *st)
{
        if (!st->busy)
                return;
        st->busy = FALSE;
        if (--st->storage->busy == 0 && st->storage->collect_pending)
                collect_soon(st->storage);
}

/* No progress after the import's end: the caller's data may be gone. */
static void import_progress_stop(ImportState *st)
{
        if (st->progress_source) {
                g_source_destroy(st->progress_source);
                g_clear_pointer(&st->progress_source, g_source_unref);
        }
        kiln_close_fdp(&st->progress_fd);
}

/* The helper's progress records (KilnImportProgress), whole ones only; the helper is ours, yet what
 * it says is checked before it reaches a caller. */
static gboolean on_import_progress(int fd, GIOCondition cond, gpointer data)
{
        ImportState *st = data;
        KilnImportProgress p[16];
        ssize_t n = read(fd, p, sizeof(p));

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return G_SOURCE_CONTINUE;
        if (n <= 0 || n % sizeof(p[0]) != 0 || (cond & (G_IO_ERR | G_IO_NVAL))) {
                g_clear_pointer(&st->progress_source, g_source_unref);
                kiln_close_fdp(&st->progress_fd);
                return G_SOURCE_REMOVE;
        }
        /* Only the newest of what came at once. */
        KilnImportProgress *last = &p[n / sizeof(p[0]) - 1];
        if ((last->layers == 0 || last->layer <= last->layers) &&
            (last->total == 0 || last->bytes <= last->total))
                st->progress(last->layer, last->layers, last->bytes, last->total, st->progress_data);
        return G_SOURCE_CONTINUE;
}

static void import_state_free(ImportState *st)
{
        import_state_release(st);
        import_progress_stop(st);
        if (st->cancellable && st->cancel_id)
                g_cancellable_disconnect(st->cancellable, st->cancel_id);
        if (st->kill_source) {
                g_source_destroy(st->kill_source);
                g_source_unref(st->kill_source);
        }
        g_clear_object(&st->proc);
        g_clear_object(&st->cancellable);
        if (st->context)
                g_main_context_unref(st->context);
        g_mutex_clear(&st->lock);
        g_free(st);
}

static gboolean on_kill_timeout(gpointer data)
{
        g_subprocess_force_exit(G_SUBPROCESS(data));
        return G_SOURCE_REMOVE;
}

/* May run in any thread. Asks kiln-import to stop (it removes its tmp tree on SIGTERM) and kills it
 * if it has not after a while. The task completes when the helper has exited. */
static void on_import_cancelled(G_GNUC_UNUSED GCancellable *cancellable, gpointer data)
{
        ImportState *st = data;
        GSource *src;

        g_subprocess_send_signal(st->proc, SIGTERM);
        src = g_timeout_source_new_seconds(HELPER_KILL_TIMEOUT_SECONDS);
        g_source_set_callback(src, on_kill_timeout, g_object_ref(st->proc), g_object_unref);
        g_mutex_lock(&st->lock);
        if (!st->kill_source) {
                st->kill_source = src;
                g_source_attach(src, st->context);
        } else {
                g_source_unref(src);
        }
        g_mutex_unlock(&st->lock);
}

/* The first non-empty line of the helper's stderr, valid UTF-8 and bounded. */
static char *helper_message(GBytes *err_bytes)
{
        gsize len = 0;
        const char *data = err_bytes ? g_bytes_get_data(err_bytes, &len) : NULL;
        const char *p = data, *end = data + len;

        while (p && p < end) {
                const char *nl = memchr(p, '\n', end - p);
                const char *line_end = nl ? nl : end;
                if (line_end > p) {
                        gsize n = MIN((gsize)(line_end - p), (gsize)HELPER_MESSAGE_MAX);
                        return g_utf8_make_valid(p, (gssize)n);
                }
                p = line_end + 1;
        }
        return NULL;
}

/* A tree imported before costs its caller no new bytes in kiln-import, but a layer the caller's builders
 * do not use yet costs its size: checked here, once the layer is known. Returns TRUE (and fails @task)
 * past [Limits] StorageBytesPerUser; the layer, used by nobody new, is collected. */
static gboolean over_user_bound(ImportState *st, const char *digest, GTask *task)
{
        KilnStorage *s = st->storage;
        g_autoptr(GArray) uses = NULL;
        guint64 used, cost;

        if (st->bound.uid == 0 || s->bytes_per_user == G_MAXUINT64 || !s->uses_func)
                return FALSE;
        uses = s->uses_func(s->uses_data);
        for (guint i = 0; i < uses->len; i++) {
                const KilnLayerUse *u = &g_array_index(uses, KilnLayerUse, i);
                if (u->owner == st->bound.uid && g_str_equal(u->layer, digest))
                        return FALSE;
        }
        used = kiln_layer_uses_bytes(uses, st->bound.uid, layer_size_cb, s);
        cost = layer_size(s, digest);
        if (cost <= s->bytes_per_user - MIN(used, s->bytes_per_user))
                return FALSE;
        s->collect_pending = TRUE;
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                "the tree holds %" G_GUINT64_FORMAT " bytes of file content "
                                "([Limits] StorageBytesPerUser=%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                                " of it in use)",
                                cost, s->bytes_per_user, used);
        return TRUE;
}

/* ---- images ---- */

void kiln_imported_image_free(KilnImportedImage *image)
{
        if (!image)
                return;
        g_strfreev(image->layers);
        g_free(image->digest);
        if (image->result)
                json_node_unref(image->result);
        g_free(image);
}

/* As over_user_bound, for the layers of an image: what the caller's builders do not use yet costs its
 * size. */
static gboolean image_over_user_bound(ImportState *st, char **layers, GTask *task)
{
        KilnStorage *s = st->storage;
        g_autoptr(GArray) uses = NULL;
        g_autoptr(GHashTable) used_by_caller = NULL;
        guint64 used, cost = 0;

        if (st->bound.uid == 0 || s->bytes_per_user == G_MAXUINT64 || !s->uses_func)
                return FALSE;
        uses = s->uses_func(s->uses_data);
        used_by_caller = g_hash_table_new(g_str_hash, g_str_equal);
        for (guint i = 0; i < uses->len; i++) {
                const KilnLayerUse *u = &g_array_index(uses, KilnLayerUse, i);
                if (u->owner == st->bound.uid)
                        g_hash_table_add(used_by_caller, (gpointer)u->layer);
        }
        for (char **l = layers; *l; l++)
                if (g_hash_table_add(used_by_caller, *l))
                        cost += MIN(layer_size(s, *l), G_MAXUINT64 - cost);
        used = kiln_layer_uses_bytes(uses, st->bound.uid, layer_size_cb, s);
        if (cost <= s->bytes_per_user - MIN(used, s->bytes_per_user))
                return FALSE;
        s->collect_pending = TRUE;
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                "the image's layers hold %" G_GUINT64_FORMAT " bytes of file content "
                                "([Limits] StorageBytesPerUser=%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                                " of it in use)",
                                cost, s->bytes_per_user, used);
        return TRUE;
}

/* kiln-import's answer in the image mode (image-read.h): checked again, it is a helper's output. */
static void image_done(ImportState *st, GBytes *out, GTask *task)
{
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(KilnImportedImage) image = g_new0(KilnImportedImage, 1);
        g_autoptr(GStrvBuilder) layers = g_strv_builder_new();
        gsize len = 0;
        const char *data = out ? g_bytes_get_data(out, &len) : NULL;
        JsonObject *o;
        JsonArray *a;
        const char *digest;

        if (!data || len == 0 || len > IMAGE_RESULT_MAX ||
            !json_parser_load_from_data(parser, data, (gssize)len, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s printed no image",
                                        HELPER_NAME);
                return;
        }
        o = json_node_get_object(json_parser_get_root(parser));
        digest = json_object_has_member(o, "digest") ? json_object_get_string_member(o, "digest") : NULL;
        a = json_object_has_member(o, "layers") ? json_object_get_array_member(o, "layers") : NULL;
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                const char *l = json_array_get_string_element(a, i);
                if (!l || !kiln_hex64_is_valid(l)) {
                        a = NULL;
                        break;
                }
                g_strv_builder_add(layers, l);
        }
        image->layers = g_strv_builder_end(layers);
        /* An image of no layers gets the empty one: a builder has at least one. */
        if (a && json_array_get_length(a) == 0) {
                g_autoptr(GError) error = NULL;
                g_autofree char *empty = kiln_storage_scratch_layer(st->storage, &error);
                if (!empty) {
                        g_task_return_error(task, g_steal_pointer(&error));
                        return;
                }
                g_strfreev(image->layers);
                image->layers = g_new0(char *, 2);
                image->layers[0] = g_steal_pointer(&empty);
        }
        if (!a || !digest || !g_str_has_prefix(digest, "sha256:") || !kiln_hex64_is_valid(digest + 7)) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s printed no valid image",
                                        HELPER_NAME);
                return;
        }
        for (char **l = image->layers; *l; l++)
                if (!kiln_storage_layer_exists(st->storage, *l)) {
                        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s named no layer %s",
                                                HELPER_NAME, *l);
                        return;
                }
        if (image_over_user_bound(st, image->layers, task))
                return;
        image->digest = g_strdup(digest);
        image->result = json_node_copy(json_parser_get_root(parser));
        g_task_return_pointer(task, g_steal_pointer(&image), (GDestroyNotify)kiln_imported_image_free);
}

static void on_import_done(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        g_autoptr(GTask) task = data;
        ImportState *st = g_task_get_task_data(task);
        g_autoptr(GBytes) out = NULL, err = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *message = NULL;
        const char *out_data;
        gsize out_len = 0;
        int status, code;

        if (st->cancellable && st->cancel_id) {
                g_cancellable_disconnect(st->cancellable, st->cancel_id);
                st->cancel_id = 0;
        }
        import_progress_stop(st);
        if (!g_subprocess_communicate_finish(st->proc, result, &out, &err, &error)) {
                /* Reading the pipes failed: make sure the helper goes. */
                g_subprocess_force_exit(st->proc);
                g_task_return_error(task, g_steal_pointer(&error));
                return;
        }
        if (g_task_return_error_if_cancelled(task))
                return;

        message = helper_message(err);
        if (g_subprocess_get_if_signaled(st->proc)) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s killed by signal %d%s%s",
                                        HELPER_NAME, g_subprocess_get_term_sig(st->proc),
                                        message ? ": " : "", message ? message : "");
                return;
        }
        status = g_subprocess_get_exit_status(st->proc);
        if (status == KILN_IMPORT_EXIT_OK &&
            g_task_get_source_tag(task) == kiln_storage_import_image_async) {
                image_done(st, out, task);
                return;
        }
        if (status == KILN_IMPORT_EXIT_OK) {
                out_data = out ? g_bytes_get_data(out, &out_len) : NULL;
                if (out_len == KILN_LAYER_DIGEST_LENGTH + 1 && out_data[KILN_LAYER_DIGEST_LENGTH] == '\n') {
                        char *digest = g_strndup(out_data, KILN_LAYER_DIGEST_LENGTH);
                        if (kiln_hex64_is_valid(digest) && !over_user_bound(st, digest, task)) {
                                g_task_return_pointer(task, digest, g_free);
                                return;
                        }
                        g_free(digest);
                        if (g_task_had_error(task))
                                return;
                }
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s printed no layer digest",
                                        HELPER_NAME);
                return;
        }

        switch (status) {
        case KILN_IMPORT_EXIT_NOT_FOUND:
                code = G_IO_ERROR_NOT_FOUND;
                break;
        case KILN_IMPORT_EXIT_PERMISSION_DENIED:
                code = G_IO_ERROR_PERMISSION_DENIED;
                break;
        case KILN_IMPORT_EXIT_NOT_DIRECTORY:
                code = G_IO_ERROR_NOT_DIRECTORY;
                break;
        case KILN_IMPORT_EXIT_INVALID:
                code = G_IO_ERROR_INVALID_ARGUMENT;
                break;
        case KILN_IMPORT_EXIT_LIMIT:
                /* LimitExceeded on the bus; the message names the setting. */
                if (message && strstr(message, "[Limits]"))
                        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "%s", message);
                else if (st->bound.uid != 0 && g_str_equal(st->bound.name, "StorageBytesPerUser"))
                        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                                "%s ([Limits] StorageBytesPerUser=%" G_GUINT64_FORMAT
                                                ", %" G_GUINT64_FORMAT " of it in use)",
                                                message ? message : "the tree is too large",
                                                st->bound.setting, st->bound.in_use);
                else
                        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                                "%s ([Limits] %s=%" G_GUINT64_FORMAT ")",
                                                message ? message : "the tree is too large", st->bound.name,
                                                st->bound.setting);
                return;
        default:
                code = G_IO_ERROR_FAILED;
                break;
        }
        if (message)
                g_task_return_new_error(task, G_IO_ERROR, code, "%s", message);
        else
                g_task_return_new_error(task, G_IO_ERROR, code, "%s failed with exit status %d", HELPER_NAME,
                                        status);
}

/* Runs kiln-import with @argv (the helper's arguments, not yet NULL-terminated) for @task; @src_fd, if
 * not -1, becomes its fd 3. The layer it writes holds at most @limit bytes, the setting @limit_name. */
static void spawn_import(KilnStorage *s, GTask *task, GPtrArray *argv, int src_fd, const ImportBound *bound,
                         KilnImportProgressFunc progress, gpointer progress_data, GCancellable *cancellable)
{
        int progress_pipe[2] = {-1, -1};
        g_autoptr(GSubprocessLauncher) launcher = NULL;
        g_autoptr(GError) error = NULL;
        const char *const env[] = {"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        ImportState *st;

        /* It dies with us (PR_SET_PDEATHSIG), and exits if we are gone before it could ask for that. */
        g_ptr_array_add(argv, g_strdup("--parent-pid"));
        g_ptr_array_add(argv, g_strdup_printf("%d", (int)getpid()));
        g_ptr_array_add(argv, g_strdup("--max-bytes"));
        g_ptr_array_add(argv, g_strdup_printf("%" G_GUINT64_FORMAT, bound->max));
        /* Progress on a pipe of its own (fd 4), read on our main context; without it none is sent. */
        if (progress && g_unix_open_pipe(progress_pipe, FD_CLOEXEC, NULL)) {
                g_ptr_array_add(argv, g_strdup("--progress-fd"));
                g_ptr_array_add(argv, g_strdup("4"));
        }
        g_ptr_array_add(argv, NULL);
        launcher =
                g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
        g_subprocess_launcher_set_environ(launcher, (char **)env);
        g_subprocess_launcher_set_cwd(launcher, "/");
        kiln_fd_limit_apply(launcher);
        if (src_fd >= 0)
                g_subprocess_launcher_take_fd(launcher, src_fd, 3); /* closed by the launcher from now on */
        if (progress_pipe[1] >= 0)
                g_subprocess_launcher_take_fd(launcher, progress_pipe[1], 4);

        st = g_new0(ImportState, 1);
        st->progress_fd = progress_pipe[0];
        st->progress = progress;
        st->progress_data = progress_data;
        st->storage = s;
        st->bound = *bound;
        g_mutex_init(&st->lock);
        st->context = g_main_context_ref_thread_default();
        st->cancellable = cancellable ? g_object_ref(cancellable) : NULL;
        g_task_set_task_data(task, st, (GDestroyNotify)import_state_free);

        st->proc = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv->pdata, &error);
        if (!st->proc) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot run %s: %s",
                                        s->helper_path, error->message);
                return;
        }
        /* No layer is collected until the caller has the result and made its builder. */
        st->busy = TRUE;
        s->busy++;
        if (st->progress_fd >= 0) {
                g_unix_set_fd_nonblocking(st->progress_fd, TRUE, NULL);
                st->progress_source = g_unix_fd_source_new(st->progress_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
                g_source_set_callback(st->progress_source, G_SOURCE_FUNC(on_import_progress), st, NULL);
                g_source_attach(st->progress_source, st->context);
        }
        kiln_reaper_claim_subprocess(st->proc); /* GLib's child watch reaps it */

        /* No cancellable here: on cancellation the helper is stopped (above) and its exit still
         * collected, so no tmp tree or zombie is left behind. */
        g_subprocess_communicate_async(st->proc, NULL, NULL, on_import_done, g_object_ref(task));
        if (cancellable)
                st->cancel_id =
                        g_cancellable_connect(cancellable, G_CALLBACK(on_import_cancelled), st, NULL);
}

/* What a directory and an image import share: the source (one absolute path or one descriptor, which
 * the helper gets as fd 3) and the caller's credentials checked, the bound that decides (the smaller
 * of the import's own and what StorageBytesPerUser leaves the caller; uid 0 has no per-user bound),
 * and the helper's arguments for them appended to @argv. FALSE with @task returned and @src_fd closed on a
 * refusal. */
static gboolean import_start_argv(KilnStorage *s, GTask *task, const char *src_path, int *src_fd,
                                  const KilnCreds *creds, ImportBound *bound, GPtrArray *argv)
{
        if ((src_path == NULL) == (*src_fd < 0)) {
                kiln_close_fdp(src_fd);
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                        "Exactly one of a source path and a source descriptor is needed");
                return FALSE;
        }
        if (src_path && (!g_path_is_absolute(src_path) || strlen(src_path) >= PATH_MAX)) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                        "Source '%s' is not an absolute path", src_path);
                return FALSE;
        }
        if (!creds || creds->uid == (uid_t)-1 || creds->gid == (gid_t)-1 || creds->n_groups > 65536 ||
            (creds->n_groups > 0 && !creds->groups)) {
                kiln_close_fdp(src_fd);
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                        "Invalid credentials");
                return FALSE;
        }
        if (creds->uid != 0 && s->bytes_per_user != G_MAXUINT64) {
                bound->uid = creds->uid;
                bound->in_use = kiln_storage_user_bytes(s, creds->uid);
                if (s->bytes_per_user - MIN(bound->in_use, s->bytes_per_user) < bound->max) {
                        bound->name = "StorageBytesPerUser";
                        bound->setting = s->bytes_per_user;
                        bound->max = s->bytes_per_user - MIN(bound->in_use, s->bytes_per_user);
                }
        }
        g_ptr_array_add(argv, g_strdup("--uid"));
        g_ptr_array_add(argv, g_strdup_printf("%u", (unsigned)creds->uid));
        g_ptr_array_add(argv, g_strdup("--gid"));
        g_ptr_array_add(argv, g_strdup_printf("%u", (unsigned)creds->gid));
        if (creds->n_groups > 0) {
                GString *groups = g_string_new(NULL);
                for (size_t i = 0; i < creds->n_groups; i++)
                        g_string_append_printf(groups, "%s%u", i ? "," : "", (unsigned)creds->groups[i]);
                g_ptr_array_add(argv, g_strdup("--groups"));
                g_ptr_array_add(argv, g_string_free(groups, FALSE));
        }
        g_ptr_array_add(argv, g_strdup("--layers"));
        g_ptr_array_add(argv, g_strdup(s->layers_dir));
        g_ptr_array_add(argv, g_strdup(src_path ? "--path" : "--fd"));
        g_ptr_array_add(argv, g_strdup(src_path ? src_path : "3"));
        return TRUE;
}

void kiln_storage_import_async(KilnStorage *s, const char *src_path, int src_fd, const KilnCreds *creds,
                               GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
        g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        ImportBound bound = {"ImportBytes", s->import_bytes, s->import_bytes, 0, 0};

        g_task_set_source_tag(task, kiln_storage_import_async);
        g_ptr_array_add(argv, g_strdup(s->helper_path));
        if (!import_start_argv(s, task, src_path, &src_fd, creds, &bound, argv))
                return;
        spawn_import(s, task, argv, src_fd, &bound, NULL, NULL, cancellable);
}

void kiln_storage_shift_layer_async(KilnStorage *s, const char *digest, const char *uid_shift,
                                    const char *gid_shift, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
        g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);

        g_task_set_source_tag(task, kiln_storage_import_async);
        if (!kiln_storage_layer_exists(s, digest)) {
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "No layer %s", digest);
                return;
        }
        /* The layer is root's own tree: read as root, written with the owners shifted. */
        g_ptr_array_add(argv, g_strdup(s->helper_path));
        g_ptr_array_add(argv, g_strdup("--uid"));
        g_ptr_array_add(argv, g_strdup("0"));
        g_ptr_array_add(argv, g_strdup("--gid"));
        g_ptr_array_add(argv, g_strdup("0"));
        g_ptr_array_add(argv, g_strdup("--layers"));
        g_ptr_array_add(argv, g_strdup(s->layers_dir));
        g_ptr_array_add(argv, g_strdup("--path"));
        g_ptr_array_add(argv, g_build_filename(s->layers_dir, digest, NULL));
        g_ptr_array_add(argv, g_strdup("--shift-uids"));
        g_ptr_array_add(argv, g_strdup(uid_shift));
        g_ptr_array_add(argv, g_strdup("--shift-gids"));
        g_ptr_array_add(argv, g_strdup(gid_shift));
        ImportBound bound = {"ImportBytes", s->import_bytes, s->import_bytes, 0, 0};

        spawn_import(s, task, argv, -1, &bound, NULL, NULL, cancellable);
}

/* Every layer a recorded result names is stored: else the helper reads the archive again. */
static gboolean known_layers_stored(KilnStorage *s, const char *result)
{
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        JsonNode *root, *layers;

        if (!json_parser_load_from_data(parser, result, -1, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root) ||
            !(layers = json_object_get_member(json_node_get_object(root), "layers")) ||
            !JSON_NODE_HOLDS_ARRAY(layers))
                return FALSE;
        for (guint i = 0; i < json_array_get_length(json_node_get_array(layers)); i++) {
                JsonNode *l = json_array_get_element(json_node_get_array(layers), i);
                if (!JSON_NODE_HOLDS_VALUE(l) || json_node_get_value_type(l) != G_TYPE_STRING ||
                    !kiln_hex64_is_valid(json_node_get_string(l)) ||
                    !kiln_storage_layer_exists(s, json_node_get_string(l)))
                        return FALSE;
        }
        return TRUE;
}

/* An archive this descriptor's file was read from before, unchanged, with every layer still stored:
 * kiln-import's recorded result, checked as its output is, without running it. The same shortcut as
 * kiln-import's own (image-read.c) under the same conditions: the caller opened the file for reading
 * himself (not O_PATH, not write-only; so he holds its bytes), it is a regular file on no pseudo file
 * system, and its fstat() identity, the image chosen (@kind, @ref, @platform) and the record agree.
 * TRUE when @task has its answer (@src_fd is then closed). */
static gboolean import_known_archive(KilnStorage *s, GTask *task, const char *kind, const char *ref,
                                     const char *platform, int *src_fd, const ImportBound *bound)
{
        g_autofree char *extra = NULL, *fingerprint = NULL, *record = NULL;
        g_autoptr(GBytes) out = NULL;
        _cleanup_close_ int layers_fd = -1;
        const char *result;
        ImportState *st;
        struct stat sb;
        int fl;

        if (*src_fd < 0 || g_str_equal(kind, "oci"))
                return FALSE;
        fl = fcntl(*src_fd, F_GETFL);
        if (fl < 0 || (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY || fstat(*src_fd, &sb) < 0 ||
            !S_ISREG(sb.st_mode) || kiln_fd_on_pseudo_fs(*src_fd, NULL) != 0)
                return FALSE;
        extra = kiln_import_archive_extra(kind, ref, platform);
        fingerprint = kiln_import_fd_fingerprint(*src_fd, "archive", extra);
        layers_fd = open(s->layers_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (!fingerprint || layers_fd < 0)
                return FALSE;
        record = kiln_import_read_record(layers_fd, KILN_IMPORT_FINGERPRINTS_DIR, fingerprint,
                                         IMAGE_RESULT_MAX + KILN_LAYER_DIGEST_LENGTH + 1);
        result = kiln_import_archive_record_result(record);
        if (!result || !known_layers_stored(s, result))
                return FALSE;
        st = g_new0(ImportState, 1);
        st->storage = s;
        st->bound = *bound;
        st->progress_fd = -1;
        g_mutex_init(&st->lock);
        st->context = g_main_context_ref_thread_default();
        g_task_set_task_data(task, st, (GDestroyNotify)import_state_free);
        /* Its layers are not collected until the caller made its builder, as after kiln-import. */
        st->busy = TRUE;
        s->busy++;
        kiln_close_fdp(src_fd);
        out = g_bytes_new(result, strlen(result));
        image_done(st, out, task);
        return TRUE;
}

void kiln_storage_import_image_async(KilnStorage *s, const char *kind, const char *src_path, int src_fd,
                                     const char *ref, const char *platform, const KilnCreds *creds,
                                     KilnImportProgressFunc progress, gpointer progress_data,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data)
{
        g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        ImportBound bound = {"ImageBytes", s->image_bytes, s->image_bytes, 0, 0};

        g_task_set_source_tag(task, kiln_storage_import_image_async);
        if (!kind) {
                kiln_close_fdp(&src_fd);
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "No image kind");
                return;
        }
        g_ptr_array_add(argv, g_strdup(s->helper_path));
        g_ptr_array_add(argv, g_strdup("--image"));
        g_ptr_array_add(argv, g_strdup(kind));
        if (!import_start_argv(s, task, src_path, &src_fd, creds, &bound, argv))
                return;
        if (import_known_archive(s, task, kind, ref, platform, &src_fd, &bound))
                return;
        if (ref) {
                g_ptr_array_add(argv, g_strdup("--ref"));
                g_ptr_array_add(argv, g_strdup(ref));
        }
        if (platform) {
                g_ptr_array_add(argv, g_strdup("--platform"));
                g_ptr_array_add(argv, g_strdup(platform));
        }
        g_ptr_array_add(argv, g_strdup("--max-layers"));
        g_ptr_array_add(argv, g_strdup_printf("%u", s->layers_per_image));
        g_ptr_array_add(argv, g_strdup("--max-entries"));
        g_ptr_array_add(argv, g_strdup_printf("%u", s->entries_per_layer));
        spawn_import(s, task, argv, src_fd, &bound, progress, progress_data, cancellable);
}

KilnImportedImage *kiln_storage_import_image_finish(G_GNUC_UNUSED KilnStorage *s, GAsyncResult *result,
                                                    GError **error)
{
        ImportState *st;

        g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
        /* As kiln_storage_import_finish: the caller makes its builder in this iteration. */
        st = g_task_get_task_data(G_TASK(result));
        if (st)
                import_state_release(st);
        return g_task_propagate_pointer(G_TASK(result), error);
}

void kiln_storage_set_image_limits(KilnStorage *s, guint64 image_bytes, guint layers_per_image,
                                   guint entries_per_layer)
{
        s->image_bytes = image_bytes;
        s->layers_per_image = layers_per_image;
        s->entries_per_layer = entries_per_layer;
}

char *kiln_storage_import_finish(G_GNUC_UNUSED KilnStorage *s, GAsyncResult *result, GError **error)
{
        ImportState *st;

        g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
        /* The caller makes its builder right after this, in the same main loop iteration (so before
         * any collection could run): from here the layer is guarded by the builder that uses it. */
        st = g_task_get_task_data(G_TASK(result));
        if (st)
                import_state_release(st);
        return g_task_propagate_pointer(G_TASK(result), error);
}

/* ---- layers ---- */

gboolean kiln_storage_layer_exists(KilnStorage *s, const char *digest)
{
        struct stat st;

        if (!kiln_hex64_is_valid(digest))
                return FALSE;
        return fstatat(s->layers_fd, digest, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

void kiln_storage_set_limits(KilnStorage *s, guint64 import_bytes, guint64 bytes_per_user)
{
        s->import_bytes = import_bytes;
        s->bytes_per_user = bytes_per_user;
}

void kiln_storage_set_layer_uses(KilnStorage *s, KilnLayerUsesFunc func, gpointer data)
{
        s->uses_func = func;
        s->uses_data = data;
        if (!func)
                g_clear_handle_id(&s->collect_idle, g_source_remove);
}

void kiln_storage_keep_layer(KilnStorage *s, const char *digest)
{
        if (!digest)
                s->keep_all = TRUE;
        else if (kiln_hex64_is_valid(digest))
                g_hash_table_add(s->kept, g_strdup(digest));
}

#define SIZES_DIR ".sizes"
#define BACKGROUND_REMOVAL_BYTES (G_GUINT64_CONSTANT(64) << 20)
#define FINGERPRINTS_DIR ".fingerprints"

/* The bytes of file content kiln-import counted for @digest (STATE/layers/.sizes/<digest>); 0 for a layer
 * without a record (the empty layer, or one imported before sizes were recorded). */
static guint64 layer_size(KilnStorage *s, const char *digest)
{
        g_autofree char *name = g_strconcat(SIZES_DIR "/", digest, NULL);
        guint64 *cached = g_hash_table_lookup(s->sizes, digest), v = 0;
        _cleanup_close_ int fd = -1;
        char buf[32];
        ssize_t n;

        if (cached)
                return *cached;
        fd = openat(s->layers_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return 0; /* not cached: a record may still come (a later import of the same tree) */
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        g_strchomp(buf);
        if (!g_ascii_string_to_unsigned(buf, 10, 0, G_MAXUINT64, &v, NULL))
                return 0;
        g_hash_table_insert(s->sizes, g_strdup(digest), g_memdup2(&v, sizeof(v)));
        return v;
}

guint64 kiln_layer_uses_bytes(const GArray *uses, uid_t owner,
                              guint64 (*size_of)(const char *digest, gpointer data), gpointer data)
{
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        guint64 total = 0;

        for (guint i = 0; uses && i < uses->len; i++) {
                const KilnLayerUse *u = &g_array_index(uses, KilnLayerUse, i);
                if (u->owner != owner || !g_hash_table_add(seen, (gpointer)u->layer))
                        continue;
                total += MIN(size_of(u->layer, data), G_MAXUINT64 - total);
        }
        return total;
}

static guint64 layer_size_cb(const char *digest, gpointer data)
{
        return layer_size(data, digest);
}

guint64 kiln_storage_user_bytes(KilnStorage *s, uid_t owner)
{
        g_autoptr(GArray) uses = s->uses_func ? s->uses_func(s->uses_data) : NULL;

        return kiln_layer_uses_bytes(uses, owner, layer_size_cb, s);
}

GPtrArray *kiln_layers_unused(GPtrArray *names, const GArray *uses, GHashTable *kept)
{
        g_autoptr(GHashTable) used = g_hash_table_new(g_str_hash, g_str_equal);
        GPtrArray *unused = g_ptr_array_new_with_free_func(g_free);

        for (guint i = 0; uses && i < uses->len; i++)
                g_hash_table_add(used, (gpointer)g_array_index(uses, KilnLayerUse, i).layer);
        /* Only layer names: .tmp-* (imports in progress), .sizes, .fingerprints and anything else
         * are not layers. */
        for (guint i = 0; i < names->len; i++) {
                const char *name = names->pdata[i];
                if (kiln_hex64_is_valid(name) && !g_hash_table_contains(used, name) &&
                    !(kept && g_hash_table_contains(kept, name)))
                        g_ptr_array_add(unused, g_strdup(name));
        }
        return unused;
}

static GPtrArray *list_dir(int dir_fd, const char *name)
{
        GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
        int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!d) {
                kiln_close_fdp(&fd);
                return names;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        g_ptr_array_add(names, g_strdup(de->d_name));
        closedir(d);
        return names;
}

/* Fingerprint records of layers that are gone only cost a lookup, but they would pile up. */
static void drop_stale_fingerprints(KilnStorage *s)
{
        g_autoptr(GPtrArray) names = list_dir(s->layers_fd, FINGERPRINTS_DIR);

        for (guint i = 0; i < names->len; i++) {
                g_autofree char *name = g_strconcat(FINGERPRINTS_DIR "/", (char *)names->pdata[i], NULL);
                _cleanup_close_ int fd = openat(s->layers_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                char digest[KILN_LAYER_DIGEST_LENGTH + 1];

                if (fd < 0 || read(fd, digest, KILN_LAYER_DIGEST_LENGTH) != KILN_LAYER_DIGEST_LENGTH)
                        continue;
                digest[KILN_LAYER_DIGEST_LENGTH] = '\0';
                if (!kiln_storage_layer_exists(s, digest))
                        (void)unlinkat(s->layers_fd, name, 0);
        }
}

static void on_trees_removed(GObject *source, GAsyncResult *result, G_GNUC_UNUSED gpointer data)
{
        g_autoptr(GError) error = NULL;

        if (!g_subprocess_wait_check_finish(G_SUBPROCESS(source), result, &error))
                g_warning("Removing unused layers: %s (the next start-up removes what is left)",
                          error->message);
}

/* rm(1) removes the renamed trees of large layers in the background: they take a while, and a process
 * of its own keeps the main loop free. --one-file-system and rm's own
 * refusal to follow symlinks make it as careful as kiln_rm_rf_at; the paths are names we just gave in
 * STATE/layers, which only root can change. */
static void remove_trees(KilnStorage *s, GPtrArray *names)
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GSubprocess) proc = NULL;
        g_autoptr(GError) error = NULL;

        g_ptr_array_add(argv, g_strdup("/bin/rm"));
        g_ptr_array_add(argv, g_strdup("-rf"));
        g_ptr_array_add(argv, g_strdup("--one-file-system"));
        g_ptr_array_add(argv, g_strdup("--"));
        for (guint i = 0; i < names->len; i++)
                g_ptr_array_add(argv, g_build_filename(s->layers_dir, (char *)names->pdata[i], NULL));
        g_ptr_array_add(argv, NULL);
        proc = g_subprocess_newv((const char *const *)argv->pdata, G_SUBPROCESS_FLAGS_NONE, &error);
        if (!proc) {
                g_warning("Cannot remove unused layers: %s", error->message);
                return;
        }
        kiln_reaper_claim_subprocess(proc); /* GLib's child watch reaps it */
        g_subprocess_wait_check_async(proc, NULL, on_trees_removed, NULL);
}

void kiln_storage_collect_layers(KilnStorage *s)
{
        g_autoptr(GArray) uses = NULL;
        g_autoptr(GPtrArray) names = NULL, unused = NULL, doomed = NULL;

        if (!s->uses_func || s->keep_all)
                return;
        /* A helper that runs may be about to name (or be reading) a layer no builder uses yet. */
        if (s->busy > 0) {
                s->collect_pending = TRUE;
                return;
        }
        s->collect_pending = FALSE;
        uses = s->uses_func(s->uses_data);
        names = list_dir(s->layers_fd, ".");
        unused = kiln_layers_unused(names, uses, s->kept);
        doomed = g_ptr_array_new_with_free_func(g_free);

        for (guint i = 0; i < unused->len; i++) {
                const char *digest = unused->pdata[i];
                g_autofree char *size_name = g_strconcat(SIZES_DIR "/", digest, NULL);
                g_autofree char *tmp = NULL;
                gboolean moved = FALSE;

                /* Renamed out of the way at once (no builder or import can find it from here on), and
                 * removed in a thread: a large tree takes a while. A crash meanwhile leaves a .tmp- tree
                 * nobody locks, which the next start-up removes. */

                for (int attempt = 0; attempt < 100 && !moved; attempt++) {
                        g_free(tmp);
                        tmp = g_strdup_printf(".tmp-gc-%08x%08x", g_random_int(), g_random_int());
                        if (renameat2(s->layers_fd, digest, s->layers_fd, tmp, RENAME_NOREPLACE) == 0)
                                moved = TRUE;
                        else if (errno != EEXIST)
                                break;
                }
                if (!moved) {
                        g_warning("Cannot remove unused layer %s: %s", digest, g_strerror(errno));
                        continue;
                }
                g_message("Removing unused layer %s", digest);
                /* Small ones (most) at once, so that nothing of them outlives the call. */
                if (layer_size(s, digest) < BACKGROUND_REMOVAL_BYTES) {
                        g_autofree char *failed = NULL;
                        int r = kiln_rm_rf_at(s->layers_fd, tmp, &failed);
                        if (r < 0)
                                g_warning("Cannot remove '%s/%s': %s", s->layers_dir, failed ? failed : tmp,
                                          g_strerror(-r));
                } else {
                        g_ptr_array_add(doomed, g_steal_pointer(&tmp));
                }
                (void)unlinkat(s->layers_fd, size_name, 0);
                g_hash_table_remove(s->sizes, digest);
        }
        if (unused->len > 0)
                drop_stale_fingerprints(s);
        if (doomed->len > 0)
                remove_trees(s, doomed);
}

static gboolean on_collect_idle(gpointer data)
{
        KilnStorage *s = data;

        s->collect_idle = 0;
        kiln_storage_collect_layers(s);
        return G_SOURCE_REMOVE;
}

/* After the current main loop iteration: the caller that took the last result makes its builder first. */
static void collect_soon(KilnStorage *s)
{
        if (!s->collect_idle && s->uses_func)
                s->collect_idle = g_idle_add(on_collect_idle, s);
}

char *kiln_storage_scratch_layer(KilnStorage *s, GError **error)
{
        g_autofree char *digest = kiln_layer_empty_digest();
        g_autofree char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        struct timespec ts[2] = {{0, 0}, {0, 0}};

        if (kiln_storage_layer_exists(s, digest))
                return g_steal_pointer(&digest);

        /* Built like kiln-import builds a layer: a fresh .tmp- directory (removed by cleanup_stale if we
         * crash), given the exact metadata the digest covers, then renamed into place. */
        for (int attempt = 0;; attempt++) {
                g_free(tmp);
                tmp = g_strdup_printf(".tmp-scratch-%08x", g_random_int());
                if (mkdirat(s->layers_fd, tmp, 0700) == 0)
                        break;
                if (errno != EEXIST || attempt > 100) {
                        kiln_storage_errno_error(error, errno, "mkdirat", tmp);
                        return NULL;
                }
        }
        fd = openat(s->layers_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                kiln_storage_errno_error(error, errno, "openat", tmp);
                goto fail;
        }
        if (fchown(fd, 0, 0) < 0) {
                kiln_storage_errno_error(error, errno, "fchown", tmp);
                goto fail;
        }
        if (fchmod(fd, KILN_LAYER_EMPTY_MODE) < 0) {
                kiln_storage_errno_error(error, errno, "fchmod", tmp);
                goto fail;
        }
        if (futimens(fd, ts) < 0) {
                kiln_storage_errno_error(error, errno, "futimens", tmp);
                goto fail;
        }
        if (fsync(fd) < 0) {
                kiln_storage_errno_error(error, errno, "fsync", tmp);
                goto fail;
        }
        if (renameat2(s->layers_fd, tmp, s->layers_fd, digest, RENAME_NOREPLACE) < 0) {
                if (errno != EEXIST) {
                        kiln_storage_errno_error(error, errno, "renameat2", digest);
                        goto fail;
                }
                unlinkat(s->layers_fd, tmp, AT_REMOVEDIR); /* made at the same time elsewhere */
        }
        fsync(s->layers_fd);
        return g_steal_pointer(&digest);

fail:
        unlinkat(s->layers_fd, tmp, AT_REMOVEDIR);
        return NULL;
}

/* ---- builders ---- */

char *kiln_storage_builder_dir(KilnStorage *s, const char *id)
{
        /* Never a path for a malformed id: NULL instead. */
        if (!kiln_hex64_is_valid(id))
                return NULL;
        return g_build_filename(s->builders_dir, id, NULL);
}

gboolean kiln_storage_create_builder(KilnStorage *s, const char *id, GError **error)
{
        g_autofree char *path = NULL;
        _cleanup_close_ int fd = -1;

        if (!kiln_storage_check_id("builder id", id, error))
                return FALSE;
        path = g_build_filename(s->builders_dir, id, NULL);

        if (mkdirat(s->builders_fd, id, 0700) < 0) {
                if (errno == EEXIST)
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "Builder directory '%s' exists",
                                    path);
                else
                        kiln_storage_errno_error(error, errno, "mkdirat", path);
                return FALSE;
        }
        fd = openat(s->builders_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                kiln_storage_errno_error(error, errno, "openat", path);
                goto fail;
        }
        /* upper/ gets the layer root's owner and mode on the first mount (see kiln_storage_mount). */
        if (mkdirat(fd, "upper", 0755) < 0 || fchmodat(fd, "upper", 0755, 0) < 0) {
                g_autofree char *p = g_build_filename(path, "upper", NULL);
                kiln_storage_errno_error(error, errno, "mkdirat", p);
                goto fail;
        }
        if (mkdirat(fd, "work", 0700) < 0) {
                g_autofree char *p = g_build_filename(path, "work", NULL);
                kiln_storage_errno_error(error, errno, "mkdirat", p);
                goto fail;
        }
        return TRUE;

fail:
        kiln_rm_rf_at(s->builders_fd, id, NULL);
        return FALSE;
}

gboolean kiln_storage_remove_builder(KilnStorage *s, const char *id, GError **error)
{
        g_autofree char *failed = NULL;
        int r;

        if (!kiln_storage_check_id("builder id", id, error))
                return FALSE;
        if (!kiln_storage_unmount(s, id, error))
                return FALSE;

        /* The upper dir was written by containers: removed without following any symlink in it and
         * without crossing into another file system. A missing directory counts as removed. */
        r = kiln_rm_rf_at(s->builders_fd, id, &failed);
        if (r < 0) {
                g_autofree char *p = g_build_filename(s->builders_dir, failed ? failed : id, NULL);
                return kiln_storage_errno_error(error, -r, "remove", p);
        }
        return TRUE;
}

/* ---- run bundles ---- */

static gboolean container_id_is_valid(const char *id)
{
        if (!*id || strlen(id) > 128)
                return FALSE;
        for (const char *p = id; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_')
                        return FALSE;
        return TRUE;
}

char *kiln_storage_new_bundle(KilnStorage *s, const char *container_id, GError **error)
{
        if (!container_id_is_valid(container_id)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid container id '%s'",
                            container_id);
                return NULL;
        }
        /* mkdirat in our own root-only directory: a fresh name nobody else can have prepared. */
        if (mkdirat(s->bundles_fd, container_id, 0700) < 0) {
                g_autofree char *p = g_build_filename(s->bundles_dir, container_id, NULL);
                kiln_storage_errno_error(error, errno, "mkdir", p);
                return NULL;
        }
        return g_build_filename(s->bundles_dir, container_id, NULL);
}

gboolean kiln_storage_remove_bundle(KilnStorage *s, const char *container_id, GError **error)
{
        g_autofree char *failed = NULL;
        int r;

        if (!container_id_is_valid(container_id)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid container id '%s'",
                            container_id);
                return FALSE;
        }
        r = kiln_rm_rf_at(s->bundles_fd, container_id, &failed);
        if (r < 0) {
                g_autofree char *p = g_build_filename(s->bundles_dir, failed ? failed : container_id, NULL);
                return kiln_storage_errno_error(error, -r, "remove", p);
        }
        return TRUE;
}

const char *kiln_storage_runtime_root(KilnStorage *s)
{
        return s->runtime_root;
}

const char *kiln_storage_isolate_root(KilnStorage *s)
{
        return s->isolate_root;
}

const char *kiln_storage_isolate_cache(KilnStorage *s)
{
        return s->isolate_cache;
}
