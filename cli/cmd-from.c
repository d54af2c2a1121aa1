/* SPDX-License-Identifier: Apache-2.0 */
/* kiln from: Manager.CreateBuilder, then print the new builder's name as `buildah from` does. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-client.h"
#include "cli-util.h"
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

int kiln_verb_from(int argc, char **argv)
{
        g_autofree char *name = NULL, *isolation = NULL, *userns = NULL, *platform = NULL, *arch = NULL;
        g_autofree char *from = NULL, *builder_name = NULL;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        _cleanup_close_ int fd = -1;
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
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "CreateBuilder");
                return KILN_EXIT_FAILURE;
        }

        r = kiln_bus_call(bus, m, KILN_TIMEOUT_CREATE_USEC, &reply);
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
