/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode (image-read.h).
 *
 * Two processes, as in the directory mode: a reader child that fully becomes the caller opens the
 * source and, for an OCI layout, each file in it that this parent asks for by name, and passes the
 * opened descriptors up; this parent (root) reads only those descriptors, never a path of the caller.
 * A descriptor the CLI opened is the caller's own open, so an archive is read only through what the
 * caller could open.
 *
 * Trust. index.json, manifests, configs and the archive are the caller's: every document is bounded
 * (JSON_MAX) and parsed with json-glib, every digest is checked as 64 hex characters before it names
 * anything, and names asked of the reader are built from those digests only. Each layer is verified
 * twice: its bytes against the manifest's digest, its uncompressed tar stream against the config's
 * diff_id. A layer is stored as STATE/layers/<diff_id hex>; when that exists already the blob is still
 * read to its end and both digests checked, but nothing is unpacked: only a caller who holds the
 * bytes of a layer may use the stored one, and a mismatch refuses the whole image.
 *
 * Atomic. New layers are unpacked into flock()ed STATE/layers/.tmp-* trees (the start-up clean-up
 * removes only unlocked ones) and renamed to their diff_id only once the whole image is verified; a
 * failure anywhere removes every tmp tree, so nothing of a refused image stays. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/fs-util.h"
#include "image-private.h"
#include "image-read.h"
#include "import-protocol.h"
#include "base/kiln-common.h"
#include "layer-digest.h"
#include "records.h"

volatile sig_atomic_t image_terminating;

int image_fail(Image *im, int code, const char *format, ...)
{
        va_list ap;

        if (im->error)
                return -1; /* the first is the cause */
        va_start(ap, format);
        im->error = g_strdup_vprintf(format, ap);
        va_end(ap);
        im->exit_code = code;
        return -1;
}

int image_fail_errno(Image *im, int e, const char *what, const char *path)
{
        g_autofree char *p = kiln_escape_for_message(path, strlen(path));
        return image_fail(im, kiln_import_exit_code_for_errno(e), "%s '%s': %s", what, p, g_strerror(e));
}

int image_fail_gerror(Image *im, const GError *error, const char *prefix)
{
        int code = KILN_IMPORT_EXIT_FAILED;

        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
                code = KILN_IMPORT_EXIT_INVALID;
        else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
                code = KILN_IMPORT_EXIT_LIMIT;
        return image_fail(im, code, "%s: %s", prefix, error->message);
}

static void on_signal(int sig)
{
        (void)sig;
        image_terminating = 1;
}

/* ---- the result ---- */

/* The progress so far to --progress-fd: now, or if the last record is KILN_IMPORT_PROGRESS_MS old. */
void image_progress(Image *im, bool now)
{
        gint64 t;

        if (im->o->progress_fd < 0)
                return;
        t = g_get_monotonic_time();
        if (!now && t - im->progress_sent < KILN_IMPORT_PROGRESS_MS * 1000)
                return;
        im->progress_sent = t;
        /* One record a write; a failure (EAGAIN: kilnd is behind) drops it, a later one says more. */
        (void)!write(im->o->progress_fd, &im->progress, sizeof(im->progress));
}

static int print_result(Image *im, char **text_out)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        JsonObject *c = json_node_get_object(im->config);
        JsonNode *n;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "digest");
        json_builder_add_string_value(b, im->digest);
        json_builder_set_member_name(b, "layers");
        json_builder_begin_array(b);
        for (guint i = 0; i < im->layer_hex->len; i++)
                json_builder_add_string_value(b, im->layer_hex->pdata[i]);
        json_builder_end_array(b);
        /* Only the parts a builder takes; kilnd checks each value again. */
        if ((n = json_object_get_member(c, "config")) && JSON_NODE_HOLDS_OBJECT(n)) {
                json_builder_set_member_name(b, "config");
                json_builder_add_value(b, json_node_copy(n));
        }
        if ((n = json_object_get_member(c, "history")) && JSON_NODE_HOLDS_ARRAY(n)) {
                json_builder_set_member_name(b, "history");
                json_builder_add_value(b, json_node_copy(n));
        }
        if (image_obj_string(c, "os")) {
                json_builder_set_member_name(b, "os");
                json_builder_add_string_value(b, image_obj_string(c, "os"));
        }
        if (image_obj_string(c, "architecture")) {
                json_builder_set_member_name(b, "architecture");
                json_builder_add_string_value(b, image_obj_string(c, "architecture"));
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, NULL);
        if (printf("%s\n", text) < 0 || fflush(stdout) != 0)
                return image_fail_errno(im, errno, "write", "stdout");
        if (text_out)
                *text_out = g_steal_pointer(&text);
        return 0;
}

/* An archive read before, unchanged: its recorded result, if every layer it names is still stored. */
static char *known_archive(Image *im, const char *fingerprint)
{
        g_autofree char *record = kiln_import_read_record(im->layers_fd, KILN_IMPORT_FINGERPRINTS_DIR,
                                                          fingerprint, ARCHIVE_RECORD_MAX + 128);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        const char *json;
        JsonArray *layers;
        JsonNode *root;

        json = kiln_import_archive_record_result(record);
        if (!json || !json_parser_load_from_data(parser, json, -1, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root) ||
            !(layers = image_obj_array(json_node_get_object(root), "layers")))
                return NULL;
        for (guint i = 0; i < json_array_get_length(layers); i++) {
                const char *l = json_array_get_string_element(layers, i);
                if (!l || !kiln_hex64_is_valid(l) || !image_layer_exists(im, l))
                        return NULL;
        }
        return g_strdup(json);
}

/* ---- options and main ---- */

static int parse_platform(ImageOptions *o, const char *text)
{
        g_auto(GStrv) parts = g_strsplit(text, "/", 4);
        guint n = g_strv_length(parts);

        if (n < 2 || n > 3 || !parts[0][0] || !parts[1][0] || (n == 3 && !parts[2][0]))
                return -1;
        g_free(o->os);
        g_free(o->arch);
        g_free(o->variant);
        o->os = g_strdup(parts[0]);
        o->arch = g_strdup(parts[1]);
        o->variant = n == 3 ? g_strdup(parts[2]) : NULL;
        return 0;
}

static int parse_image_options(int argc, char **argv, ImageOptions *o)
{
        for (int i = 1; i + 1 < argc; i += 2) {
                const char *arg = argv[i], *val = argv[i + 1];
                guint64 v;

                if (g_str_equal(arg, "--image")) {
                        if (!g_str_equal(val, "oci") && !g_str_equal(val, "oci-archive") &&
                            !g_str_equal(val, "docker-archive"))
                                return -1;
                        o->kind = val;
                } else if (g_str_equal(arg, "--uid") || g_str_equal(arg, "--gid")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 0, UINT32_MAX - 1, &v, NULL))
                                return -1;
                        if (arg[2] == 'u')
                                o->uid = (uid_t)v, o->have_uid = true;
                        else
                                o->gid = (gid_t)v, o->have_gid = true;
                } else if (g_str_equal(arg, "--groups")) {
                        g_auto(GStrv) parts = g_strsplit(val, ",", -1);
                        size_t n = g_strv_length(parts);
                        if (o->groups || n > KILN_IMPORT_MAX_GROUPS)
                                return -1;
                        o->groups = g_new0(gid_t, n + 1);
                        for (size_t j = 0; j < n; j++) {
                                if (!g_ascii_string_to_unsigned(parts[j], 10, 0, UINT32_MAX - 1, &v, NULL))
                                        return -1;
                                o->groups[j] = (gid_t)v;
                        }
                        o->n_groups = n;
                } else if (g_str_equal(arg, "--layers")) {
                        o->layers = val;
                } else if (g_str_equal(arg, "--path")) {
                        o->path = val;
                } else if (g_str_equal(arg, "--fd")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 3, INT_MAX, &v, NULL))
                                return -1;
                        o->fd = (int)v;
                } else if (g_str_equal(arg, "--ref")) {
                        if (!val[0] || strlen(val) > 4096)
                                return -1;
                        o->ref = val;
                } else if (g_str_equal(arg, "--platform")) {
                        if (parse_platform(o, val) < 0)
                                return -1;
                        o->platform_arg = val;
                } else if (g_str_equal(arg, "--max-bytes") || g_str_equal(arg, "--max-layers") ||
                           g_str_equal(arg, "--max-entries")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 1, UINT64_MAX, &v, NULL))
                                return -1;
                        if (arg[6] == 'b')
                                o->max_bytes = v;
                        else if (arg[6] == 'l')
                                o->max_layers = v;
                        else
                                o->max_entries = v;
                } else if (g_str_equal(arg, "--progress-fd")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 3, INT_MAX, &v, NULL))
                                return -1;
                        o->progress_fd = (int)v;
                } else if (g_str_equal(arg, "--parent-pid")) {
                        if (!g_ascii_string_to_unsigned(val, 10, 1, INT_MAX, &v, NULL))
                                return -1;
                        o->parent_pid = (pid_t)v;
                } else {
                        return -1;
                }
        }
        if (argc % 2 != 1 || !o->kind || !o->have_uid || !o->have_gid || !o->layers ||
            !g_path_is_absolute(o->layers) || !!o->path == (o->fd >= 0))
                return -1;
        if (o->path && (!g_path_is_absolute(o->path) || strlen(o->path) >= PATH_MAX))
                return -1;
        return 0;
}

int kiln_image_main(int argc, char **argv)
{
        ImageOptions o = {.fd = -1,
                          .max_bytes = UINT64_MAX,
                          .max_layers = 128,
                          .max_entries = KILN_IMPORT_MAX_ENTRIES,
                          .progress_fd = -1};
        Image im = {.o = &o, .layers_fd = -1, .sock = -1, .child = -1, .root_fd = -1};
        pid_t parent = getppid();
        struct sigaction sa = {.sa_handler = on_signal};
        int keep[2], exit_code = KILN_IMPORT_EXIT_OK;
        g_autofree char *archive_fingerprint = NULL, *known = NULL, *result = NULL;
        struct stat st;

        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        umask(077);
        image_host_platform(&o.os, &o.arch, &o.variant);
        g_clear_pointer(&o.variant, g_free); /* any variant of the host's architecture, unless asked */
        if (parse_image_options(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: kiln-import --image oci|oci-archive|docker-archive --uid U --gid G "
                                "[--groups G1,...] --layers DIR (--path ABSOLUTE-PATH | --fd N) [--ref REF] "
                                "[--platform OS/ARCH[/VARIANT]] [--max-bytes N] [--max-layers N] "
                                "[--max-entries N] [--parent-pid P]\n");
                exit_code = KILN_IMPORT_EXIT_USAGE;
                goto out_options;
        }
        /* Killed with kilnd; gone at once if it died before we could ask for that. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
            getppid() != (o.parent_pid ? o.parent_pid : parent)) {
                fprintf(stderr, "the service that started kiln-import is gone\n");
                exit_code = KILN_IMPORT_EXIT_FAILED;
                goto out_options;
        }
        keep[0] = o.fd;
        keep[1] = o.progress_fd;
        kiln_close_all_fds_except(keep, 2);
        /* Progress is best effort: a full pipe drops a record, it never stalls the import. */
        if (o.progress_fd >= 0 &&
            (o.progress_fd == o.fd || fcntl(o.progress_fd, F_SETFL, O_WRONLY | O_NONBLOCK) < 0))
                o.progress_fd = -1;
        if (chdir("/") < 0) {
                exit_code = KILN_IMPORT_EXIT_FAILED;
                goto out_options;
        }
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        im.tmps = g_ptr_array_new_with_free_func((GDestroyNotify)image_tmp_free);
        im.layer_hex = g_ptr_array_new_with_free_func(g_free);
        im.layer_tmp = g_ptr_array_new();
        im.records = g_ptr_array_new_with_free_func(g_free);
        im.buffer = g_malloc(READ_BUFFER_SIZE);

        /* STATE/layers must be ours and writable by nobody else: names in it are trusted below. */
        im.layers_fd = open(o.layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (im.layers_fd < 0) {
                image_fail_errno(&im, errno, "open", o.layers);
                goto out;
        }
        if (fstat(im.layers_fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
                image_fail(&im, KILN_IMPORT_EXIT_FAILED,
                           "'%s' must be owned by uid %u and not writable by others", o.layers,
                           (unsigned)geteuid());
                goto out;
        }

        if (image_start_reader(&im) < 0)
                goto out;
        if (o.fd >= 0)
                kiln_close_fdp(&o.fd); /* the reader's now */
        im.root_fd = image_reader_receive(&im, o.path ? o.path : "source");
        if (im.root_fd < 0)
                goto out;
        if (fstat(im.root_fd, &st) < 0) {
                image_fail_errno(&im, errno, "fstat", "source");
                goto out;
        }
        if (g_str_equal(o.kind, "oci")) {
                if (!S_ISDIR(st.st_mode)) {
                        image_fail(&im, KILN_IMPORT_EXIT_NOT_DIRECTORY, "'%s' is not a directory (oci:DIR)",
                                   o.path ? o.path : "source");
                        goto out;
                }
                if (image_read_layout(&im) < 0)
                        goto out;
        } else {
                if (image_check_file(&im, im.root_fd, o.path ? o.path : "source") < 0)
                        goto out;
                /* The archive is one file: the reader has nothing more to open. */
                kiln_close_fdp(&im.sock);
                {
                        g_autofree char *extra = kiln_import_archive_extra(o.kind, o.ref, o.platform_arg);
                        archive_fingerprint = kiln_import_fd_fingerprint(im.root_fd, "archive", extra);
                }
                if (archive_fingerprint && (known = known_archive(&im, archive_fingerprint))) {
                        if (printf("%s", known) < 0 || fflush(stdout) != 0)
                                image_fail_errno(&im, errno, "write", "stdout");
                        goto out;
                }
                im.small = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, image_small_free);
                im.large = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, image_large_free);
                if (image_read_archive(&im) < 0)
                        goto out;
        }
        if (image_terminating) {
                image_fail(&im, KILN_IMPORT_EXIT_FAILED, "stopped");
                goto out;
        }
        if (image_publish(&im) < 0 || print_result(&im, &result) < 0)
                goto out;
        im.progress.layer = im.progress.layers = im.layer_hex->len;
        im.progress.total = MAX(im.progress.total, im.progress.bytes);
        im.progress.bytes = im.progress.total;
        image_progress(&im, true);
        for (guint i = 0; i < im.records->len; i++) {
                char *line = im.records->pdata[i], *space = strchr(line, ' ');
                *space = '\0';
                kiln_import_write_record(im.layers_fd, KILN_IMPORT_FINGERPRINTS_DIR, line, space + 1);
        }
        if (archive_fingerprint && im.layer_hex->len > 0 && strlen(result) <= ARCHIVE_RECORD_MAX) {
                g_autofree char *record =
                        g_strdup_printf("%s\n%s\n", (char *)im.layer_hex->pdata[0], result);
                kiln_import_write_record(im.layers_fd, KILN_IMPORT_FINGERPRINTS_DIR, archive_fingerprint,
                                         record);
        }

out:
        if (im.error) {
                fprintf(stderr, "%s\n", im.error);
                exit_code = im.exit_code ? im.exit_code : KILN_IMPORT_EXIT_FAILED;
        }
        kiln_close_fdp(&im.sock);
        if (im.child > 0) {
                int status;
                kill(im.child, SIGKILL);
                while (waitpid(im.child, &status, 0) < 0 && errno == EINTR)
                        ;
        }
        kiln_close_fdp(&im.root_fd);
        if (im.tmps)
                image_remove_tmps(&im);
        if (im.small)
                g_hash_table_unref(im.small);
        if (im.large)
                g_hash_table_unref(im.large);
        if (im.tmps)
                g_ptr_array_unref(im.tmps);
        if (im.layer_hex)
                g_ptr_array_unref(im.layer_hex);
        if (im.layer_tmp)
                g_ptr_array_unref(im.layer_tmp);
        if (im.records)
                g_ptr_array_unref(im.records);
        if (im.config)
                json_node_unref(im.config);
        g_free(im.digest);
        g_free(im.buffer);
        g_free(im.error);
        kiln_close_fdp(&im.layers_fd);
out_options:
        if (o.fd >= 0)
                close(o.fd);
        if (o.progress_fd >= 0)
                close(o.progress_fd);
        g_free(o.groups);
        g_free(o.os);
        g_free(o.arch);
        g_free(o.variant);
        return exit_code;
}
