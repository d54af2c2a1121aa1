/* SPDX-License-Identifier: Apache-2.0 */
/* Start-up detection of a working OCI runtime: each candidate runs a trivial container through the same
 * driver as every run (run --detach, wait, delete), and the first whose container exits 0 is chosen.
 * Runtimes do refuse hosts they cannot handle — crun refuses a hybrid cgroup v1 layout, for one — and
 * only a real container finds out.
 *
 * The container runs the host's own `true`: its root file system is a tiny directory of ours whose
 * /usr (and /bin, /lib... as the host has them, directories or symlinks) are read-only, nosuid, nodev
 * binds of the host's, so nothing needs to be installed for it. Its config.json comes from the spec
 * generator (spec/), as a run's does: no capabilities, no new privileges, private namespaces; of the
 * host it sees only what it can read. */
#include <fcntl.h>
#include <sys/stat.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "runtime/runtime-private.h"
#include "spec/spec.h"

#define DETECT_TIMEOUT_SECONDS 30

/* Top-level host directories that programs and their libraries live in, on merged-/usr systems and
 * others alike. */
static const char *const host_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"};

/* The probe's config.json, from the spec generator as every run's: the host's `true` as root with no
 * capabilities and no new privileges, private namespaces, the program directories @binds bound
 * read-only, nosuid and nodev. So the probe asks of a runtime what a run will. */
static char *detect_config(const char *rootfs, const char *true_path, GPtrArray *binds, GError **error)
{
        static const char *const drop_all[] = {"ALL", NULL};
        static const char *const bind_options[] = {"ro", "nosuid", "nodev", NULL};
        const char *const args[] = {true_path, NULL};
        const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
        g_autoptr(GArray) mounts = g_array_new(FALSE, TRUE, sizeof(KilnMount));
        g_autoptr(JsonNode) spec = NULL;
        KilnSpecInput in = {.hostname = "kiln-detect", .rootfs = rootfs, .argv = args, .env = env};

        in.no_new_privileges = TRUE;
        in.builder_cap_drop = drop_all;
        in.last_cap = -1; /* libcap's */
        for (guint i = 0; i < binds->len; i++) {
                KilnMount m = {.type = KILN_MOUNT_BIND,
                               .source = binds->pdata[i],
                               .destination = binds->pdata[i],
                               .options = bind_options};
                g_array_append_val(mounts, m);
        }
        in.mounts = (const KilnMount *)mounts->data;
        in.n_mounts = mounts->len;
        spec = kiln_spec_generate(&in, error);
        return spec ? kiln_spec_to_data(spec, FALSE, NULL) : NULL;
}

/* The bundle in @bundle (a fresh directory of ours): rootfs/ mirroring the host's program directories,
 * and config.json. */
static gboolean write_detect_bundle(const char *bundle, GError **error)
{
        g_autofree char *rootfs = g_build_filename(bundle, "rootfs", NULL);
        g_autofree char *config_path = g_build_filename(bundle, "config.json", NULL);
        g_autoptr(GPtrArray) binds = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *config = NULL;
        const char *true_path = NULL;
        _cleanup_close_ int rootfs_fd = -1;

        if (mkdir(rootfs, 0755) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "mkdir %s: %s", rootfs,
                                   g_strerror(errno)),
                       FALSE;
        rootfs_fd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (rootfs_fd < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open %s: %s", rootfs,
                                   g_strerror(errno)),
                       FALSE;
        for (size_t i = 0; i < G_N_ELEMENTS(host_dirs); i++) {
                g_autofree char *host = g_strconcat("/", host_dirs[i], NULL);
                g_autofree char *target = NULL;
                struct stat st;

                if (lstat(host, &st) < 0)
                        continue;
                if (S_ISLNK(st.st_mode) && (target = g_file_read_link(host, NULL)) &&
                    symlinkat(target, rootfs_fd, host_dirs[i]) < 0)
                        return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                           "symlink %s/%s: %s", rootfs, host_dirs[i], g_strerror(errno)),
                               FALSE;
                if (S_ISDIR(st.st_mode)) {
                        if (mkdirat(rootfs_fd, host_dirs[i], 0755) < 0)
                                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                                                   "mkdir %s/%s: %s", rootfs, host_dirs[i],
                                                   g_strerror(errno)),
                                       FALSE;
                        g_ptr_array_add(binds, g_steal_pointer(&host));
                }
        }
        if (mkdirat(rootfs_fd, "proc", 0755) < 0 || mkdirat(rootfs_fd, "dev", 0755) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "mkdir in %s: %s",
                                   rootfs, g_strerror(errno)),
                       FALSE;

        if (g_file_test("/usr/bin/true", G_FILE_TEST_IS_EXECUTABLE))
                true_path = "/usr/bin/true";
        else if (g_file_test("/bin/true", G_FILE_TEST_IS_EXECUTABLE))
                true_path = "/bin/true";
        else
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                                   "Neither /usr/bin/true nor /bin/true exists to try runtimes with"),
                       FALSE;

        config = detect_config(rootfs, true_path, binds, error);
        return config && g_file_set_contents_full(config_path, config, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                                  0600, error);
}

typedef struct {
        gboolean done;
        int status;
        GError *error;
} DetectRun;

static void on_detect_started(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        DetectRun *r = data;

        r->done = TRUE;
        r->status = kiln_container_start_finish(NULL, result, &r->error) ? 0 : -1;
}

static void on_detect_waited(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        DetectRun *r = data;

        r->done = TRUE;
        r->status = kiln_container_wait_finish(NULL, result, &r->error);
}

static gboolean on_detect_timeout(gpointer data)
{
        g_cancellable_cancel(data);
        return G_SOURCE_REMOVE;
}

static gboolean try_runtime(const char *runtime, const char *state_root, const char *bundle, const char *id,
                            GError **error)
{
        g_autoptr(GMainContext) context = g_main_context_new();
        g_autoptr(GCancellable) cancellable = g_cancellable_new();
        KilnRuntimeSpec spec = {
                .runtime = runtime,
                .state_root = state_root,
                .bundle_dir = bundle,
                .container_id = id,
                .stdin_fd = -1,
                .stdout_fd = -1,
                .stderr_fd = -1,
        };
        DetectRun r = {0};
        KilnContainer *c;
        GSource *timer;

        g_main_context_push_thread_default(context);
        timer = g_timeout_source_new_seconds(DETECT_TIMEOUT_SECONDS);
        g_source_set_callback(timer, on_detect_timeout, cancellable, NULL);
        g_source_attach(timer, context);

        c = kiln_container_new(&spec);
        kiln_container_start_async(c, cancellable, on_detect_started, &r);
        while (!r.done)
                g_main_context_iteration(context, TRUE);
        if (r.status == 0) {
                r.done = FALSE;
                kiln_container_wait_async(c, cancellable, on_detect_waited, &r);
                while (!r.done)
                        g_main_context_iteration(context, TRUE);
        }
        kiln_container_free_draining(c, context);

        g_source_destroy(timer);
        g_source_unref(timer);
        g_main_context_pop_thread_default(context);

        if (r.error) {
                g_propagate_error(error, r.error);
                return FALSE;
        }
        if (r.status != 0)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                   "its test container exited with status %d", r.status),
                       FALSE;
        return TRUE;
}

char *kiln_runtime_detect(char **candidates, const char *state_root, const char *scratch_dir, GError **error)
{
        g_autofree char *bundle = g_build_filename(scratch_dir, "kiln-detect-XXXXXX", NULL);
        g_autoptr(GString) reasons = g_string_new(NULL);
        g_autoptr(GError) local = NULL;
        char *found = NULL;

        if (!candidates || !*candidates)
                return g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "No runtime to try"),
                       NULL;
        if (g_mkdir_with_parents(state_root, 0700) < 0)
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "mkdir %s: %s",
                                   state_root, g_strerror(errno)),
                       NULL;
        if (!g_mkdtemp_full(bundle, 0700))
                return g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "mkdtemp %s: %s", bundle,
                                   g_strerror(errno)),
                       NULL;

        if (!write_detect_bundle(bundle, &local)) {
                g_propagate_error(error, g_steal_pointer(&local));
        } else {
                for (char **c = candidates; *c && !found; c++) {
                        /* An absolute path is kept when executable, a name looked up in PATH. */
                        g_autofree char *path = g_find_program_in_path(*c);
                        g_autofree char *id =
                                g_strdup_printf("kiln-detect-%d-%d", (int)getpid(), (int)(c - candidates));

                        g_clear_error(&local);
                        if (!path)
                                g_string_append_printf(reasons, "%s%s: not found", reasons->len ? "; " : "",
                                                       *c);
                        else if (try_runtime(path, state_root, bundle, id, &local))
                                found = g_steal_pointer(&path);
                        else
                                g_string_append_printf(reasons, "%s%s: %s", reasons->len ? "; " : "", path,
                                                       local->message);
                }
                if (!found)
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "No working OCI runtime: %s",
                                    reasons->str);
        }

        /* Only our own fresh tree: kiln_rm_rf_at never follows the rootfs's symlinks to the host. */
        {
                g_autofree char *parent = g_path_get_dirname(bundle);
                g_autofree char *name = g_path_get_basename(bundle);
                _cleanup_close_ int dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                g_autofree char *failed = NULL;
                int r = dirfd < 0 ? -errno : kiln_rm_rf_at(dirfd, name, &failed);
                if (r < 0)
                        g_warning("Cannot remove %s: %s", failed ? failed : bundle, g_strerror(-r));
        }
        return found;
}
