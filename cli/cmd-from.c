/* SPDX-License-Identifier: Apache-2.0 */
/* kiln from: Manager.CreateBuilder, then print the new builder's name as `buildah from` does. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-client.h"
#include "cli-util.h"
#include "net-flags.h"
#include "verbs.h"

/* Image sources, named as skopeo names them: KIND:PATH[:REF]. PATH ends at the first ':'. */
static const char *const image_transports[] = {"oci:", "oci-archive:", "docker-archive:"};

/* The absolute path of an open directory: the one we opened, even if renamed meanwhile. */
static char *fd_path(int fd, const char *fallback)
{
        g_autofree char *link = g_strdup_printf("/proc/self/fd/%d", fd);
        char *path = g_file_read_link(link, NULL);
        char *resolved;

        if (path)
                return path;
        resolved = realpath(fallback, NULL);
        return resolved ? resolved : g_canonicalize_filename(fallback, NULL);
}

/* SOURCE to the `from` argument and, for a directory, the descriptor we pass as rootfs_fd.
 * kilnd opens a path with the caller's credentials too, but opening it here means it is
 * resolved against our working directory, not the service's. */
static int resolve_source(const char *source, char **ret_from, int *ret_fd)
{
        _cleanup_close_ int fd = -1;

        if (g_str_equal(source, "scratch")) {
                *ret_from = g_strdup(source);
                *ret_fd = -1;
                return 0;
        }

        for (size_t i = 0; i < G_N_ELEMENTS(image_transports); i++) {
                const char *rest, *colon;
                g_autofree char *path = NULL, *abs = NULL;
                gboolean dir = g_str_equal(image_transports[i], "oci:");

                if (!g_str_has_prefix(source, image_transports[i]))
                        continue;
                rest = source + strlen(image_transports[i]);
                colon = strchr(rest, ':');
                path = colon ? g_strndup(rest, colon - rest) : g_strdup(rest);
                if (!*path) {
                        kiln_log("'%s' names no %s", source, dir ? "directory" : "file");
                        return -EINVAL;
                }
                /* Opened here, as ourselves: kilnd reads only what we could open. */
                fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0) {
                        int saved = errno;
                        kiln_log("cannot open '%s': %s", path, g_strerror(saved));
                        return -saved;
                }
                abs = fd_path(fd, path);
                *ret_from = g_strconcat(image_transports[i], abs, colon ? colon : "", NULL);
                *ret_fd = kiln_steal_fd(&fd);
                return 0;
        }

        fd = open(source, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        /* Images out: no such directory here, so a name of an image in kiln's store (kilnd looks it up
         * among the images the caller may see). */
        if (fd < 0 && (errno == ENOENT || errno == ENOTDIR) && source[0] != '/' && source[0] != '.') {
                *ret_from = g_strdup(source);
                *ret_fd = -1;
                return 0;
        }
        if (fd < 0) {
                int saved = errno;

                if (saved == ENOENT || saved == ENOTDIR)
                        kiln_log("cannot open '%s': %s (SOURCE is scratch, a directory, oci:DIR[:TAG], "
                                 "oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG|@N])",
                                 source, g_strerror(saved));
                else
                        kiln_log("cannot open '%s': %s", source, g_strerror(saved));
                return -saved;
        }

        *ret_from = fd_path(fd, source);
        /* A directory holding an OCI image layout is that image, as for oci:DIR. */
        if (faccessat(fd, "oci-layout", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                char *image = g_strconcat("oci:", *ret_from, NULL);
                g_free(*ret_from);
                *ret_from = image;
        }
        *ret_fd = kiln_steal_fd(&fd);
        return 0;
}

/* The progress line (ImportProgress, asked for with a token): on a terminal's stderr only, from
 * one second after the call on, one line rewritten with \r and cleared at the end. */
typedef struct Progress {
        char token[32];
        gint64 start;   /* monotonic µs of the call */
        gboolean shown; /* a line is on the terminal */
        sd_bus_message *reply;
        int error; /* a failed call: its errno */
        sd_bus_error bus_error;
        gboolean done;
} Progress;

static void progress_clear(Progress *p)
{
        if (p->shown)
                fputs("\r\033[K", stderr);
        p->shown = FALSE;
}

static int on_progress(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        Progress *p = userdata;
        const char *token;
        uint32_t layer, layers;
        uint64_t bytes, total;

        if (sd_bus_message_read(m, "suutt", &token, &layer, &layers, &bytes, &total) < 0 ||
            !g_str_equal(token, p->token) || g_get_monotonic_time() - p->start < G_USEC_PER_SEC)
                return 0;
        fputs("\r", stderr);
        if (layers)
                fprintf(stderr, "layer %u/%u ", layer, layers);
        else if (layer)
                fprintf(stderr, "layer %u ", layer);
        fprintf(stderr, "%.1f MiB", bytes / 1048576.0);
        if (total)
                fprintf(stderr, "/%.1f MiB", total / 1048576.0);
        fputs("\033[K", stderr);
        fflush(stderr);
        p->shown = TRUE;
        return 0;
}

static int on_create_reply(sd_bus_message *m, void *userdata, G_GNUC_UNUSED sd_bus_error *error)
{
        Progress *p = userdata;

        p->done = TRUE;
        if (sd_bus_message_is_method_error(m, NULL)) {
                p->error = sd_bus_message_get_errno(m);
                sd_bus_error_copy(&p->bus_error, sd_bus_message_get_error(m));
                return 0;
        }
        p->reply = sd_bus_message_ref(m);
        return 0;
}

/* CreateBuilder with its progress shown: the call is asynchronous so that ImportProgress signals,
 * which come before the reply, are dispatched while it runs. */
static int call_with_progress(sd_bus *bus, sd_bus_message *m, Progress *p, sd_bus_message **ret_reply)
{
        sd_bus_slot *match = NULL, *call = NULL;
        int r;

        r = sd_bus_match_signal(bus, &match, KILN_BUS_NAME, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE,
                                "ImportProgress", on_progress, p);
        if (r >= 0)
                r = sd_bus_call_async(bus, &call, m, on_create_reply, p, KILN_TIMEOUT_CREATE_USEC);
        p->start = g_get_monotonic_time();
        while (r >= 0 && !p->done) {
                r = sd_bus_process(bus, NULL);
                if (r == 0)
                        r = sd_bus_wait(bus, UINT64_MAX);
                if (r == -EINTR)
                        r = 0;
        }
        sd_bus_slot_unref(call);
        sd_bus_slot_unref(match);
        progress_clear(p);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "CreateBuilder");
        if (p->error || sd_bus_error_is_set(&p->bus_error))
                return kiln_bus_log_error(&p->bus_error, -(p->error ? p->error : EIO), "CreateBuilder");
        *ret_reply = g_steal_pointer(&p->reply);
        return 0;
}

int kiln_verb_from(int argc, char **argv)
{
        g_autofree char *name = NULL, *isolation = NULL, *userns = NULL, *platform = NULL, *arch = NULL;
        g_autofree char *from = NULL, *builder_name = NULL;
        g_auto(KilnNetFlags) net = {0};
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        _cleanup_close_ int fd = -1;
        gboolean quiet = FALSE, show_progress;
        Progress progress = {.bus_error = SD_BUS_ERROR_NULL};
        const char *path;
        int r;

        const GOptionEntry entries[] = {
                {"name", 0, 0, G_OPTION_ARG_STRING, &name, "Name of the builder (default: generated)",
                 "NAME"},
                {"isolation", 0, 0, G_OPTION_ARG_STRING, &isolation, "How runs are isolated: oci or chroot",
                 "ISOLATION"},
                {"userns", 0, 0, G_OPTION_ARG_STRING, &userns, "User namespace of runs: auto or host",
                 "USERNS"},
                {"platform", 0, 0, G_OPTION_ARG_STRING, &platform,
                 "Image of this platform from a multi-platform image (default: this host's)",
                 "OS/ARCH[/VARIANT]"},
                {"arch", 0, 0, G_OPTION_ARG_STRING, &arch,
                 "Image of this architecture, for linux (as --platform linux/ARCH)", "ARCH"},
                {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line on a terminal", NULL},
                KILN_NET_FLAG_ENTRIES(&net),
                {NULL},
        };

        if (!kiln_parse_options("from", "SOURCE",
                                "Create a builder. SOURCE is 'scratch', a directory, oci:DIR[:TAG], "
                                "oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG|@N]. Prints the "
                                "builder's name.",
                                entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 2)
                return kiln_usage_error("from", "expected exactly one SOURCE");

        if (platform && arch)
                return kiln_usage_error("from", "--platform and --arch name the same thing: give one");
        if (arch)
                platform = g_strconcat("linux/", arch, NULL);

        r = resolve_source(argv[1], &from, &fd);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        r = kiln_bus_open(&bus);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        /* Asked for only when it can be shown: nobody else reads it. */
        show_progress = !quiet && isatty(STDERR_FILENO) == 1;
        if (show_progress)
                g_snprintf(progress.token, sizeof(progress.token), "kiln-from-%d", (int)getpid());

        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, "CreateBuilder", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append(m, "ss", name ? name : "", from);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && fd >= 0)
                r = sd_bus_message_append(m, "{sv}", "rootfs_fd", "h", fd); /* sd-bus sends a copy */
        if (r >= 0 && isolation)
                r = kiln_bus_append_option_string(m, "isolation", isolation);
        if (r >= 0 && userns)
                r = kiln_bus_append_option_string(m, "userns", userns);
        if (r >= 0 && platform)
                r = kiln_bus_append_option_string(m, "platform", platform);
        if (r >= 0 && show_progress)
                r = kiln_bus_append_option_string(m, "progress", progress.token);
        if (r >= 0)
                r = kiln_net_flags_append(m, &net);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "CreateBuilder");
                return KILN_EXIT_FAILURE;
        }

        if (show_progress)
                r = call_with_progress(bus, m, &progress, &reply);
        else
                r = kiln_bus_call(bus, m, KILN_TIMEOUT_CREATE_USEC, &reply);
        sd_bus_error_free(&progress.bus_error);
        g_clear_pointer(&progress.reply, sd_bus_message_unref);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                return KILN_EXIT_FAILURE;
        }

        r = kiln_bus_get_builder_string(bus, path, "Name", &builder_name);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        printf("%s\n", builder_name);
        return KILN_EXIT_SUCCESS;
}
