/* SPDX-License-Identifier: Apache-2.0 */
/* Images out: kiln commit, images, rmi, tag and push (Builder.Commit, Manager.ListImages and GetImage,
 * Image.Remove, Tag and Push). Push opens its destination as the caller: the archive kilnd writes is
 * the caller's file; for oci:DIR the caller's own tar unpacks the stream into DIR. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus-client.h"
#include "cli-util.h"
#include "json-module.h"
#include "verbs.h"

#define SHORT_ID_LENGTH 12
/* Writing an image can take long for big layers. */
#define KILN_TIMEOUT_IMAGE_USEC (60ULL * 60 * 1000 * 1000)

int kiln_verb_commit(int argc, char **argv)
{
        gint64 timestamp = -1;
        gboolean squash = FALSE;
        g_autofree char *format = NULL, *compression = NULL, *id = NULL;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *builder = NULL;
        const char *image_path, *epoch;
        int r;

        const GOptionEntry entries[] = {
                {"timestamp", 0, 0, G_OPTION_ARG_INT64, &timestamp,
                 "Set every time in the new layer that is later than N, and the image's creation time, to N "
                 "(seconds since the epoch; default: $SOURCE_DATE_EPOCH if set)",
                 "N"},
                {"squash", 0, 0, G_OPTION_ARG_NONE, &squash, "Write the whole root file system as one layer",
                 NULL},
                {"format", 'f', 0, G_OPTION_ARG_STRING, &format, "Manifest format: oci (default) or docker",
                 "FORMAT"},
                {"compression", 0, 0, G_OPTION_ARG_STRING, &compression, "gzip (default), zstd or none",
                 "C"},
                {NULL},
        };

        if (!kiln_parse_options("commit", "BUILDER [IMAGE]", "Write a builder's changes as a new image.",
                                entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc < 2 || argc > 3)
                return kiln_usage_error("commit", "expected BUILDER and an optional IMAGE name");
        epoch = getenv("SOURCE_DATE_EPOCH");
        if (timestamp < 0 && epoch && *epoch) {
                char *end;
                errno = 0;
                timestamp = strtoll(epoch, &end, 10);
                if (errno || *end || timestamp < 0)
                        return kiln_usage_error("commit",
                                                "SOURCE_DATE_EPOCH is not a number of seconds: '%s'", epoch);
        }
        r = kiln_bus_open(&bus);
        if (r < 0 || kiln_bus_resolve_builder(bus, argv[1], &builder) < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, builder, KILN_BUILDER_INTERFACE, "Commit", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append(m, "s", argc > 2 ? argv[2] : "");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && timestamp >= 0)
                r = sd_bus_message_append(m, "{sv}", "timestamp", "t", (uint64_t)timestamp);
        if (r >= 0 && squash)
                r = sd_bus_message_append(m, "{sv}", "squash", "b", 1);
        if (r >= 0 && format)
                r = sd_bus_message_append(m, "{sv}", "format", "s", format);
        if (r >= 0 && compression)
                r = sd_bus_message_append(m, "{sv}", "compression", "s", compression);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Commit"), KILN_EXIT_FAILURE;
        if (kiln_bus_call(bus, m, KILN_TIMEOUT_IMAGE_USEC, &reply) < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_read(reply, "o", &image_path);
        if (r < 0)
                return kiln_bus_log_parse_error(r), KILN_EXIT_FAILURE;
        if (kiln_bus_get_string(bus, image_path, KILN_IMAGE_INTERFACE, "Id", &id) < 0)
                return KILN_EXIT_FAILURE;
        printf("%s\n", id);
        return KILN_EXIT_SUCCESS;
}

typedef struct {
        char *id;
        char **names;
        uid_t owner;
        char *path;
} ImageRow;

static void image_row_free(gpointer data)
{
        ImageRow *row = data;

        g_free(row->id);
        g_strfreev(row->names);
        g_free(row->path);
        g_free(row);
}

static int list_images(sd_bus *bus, bool only_own, GPtrArray **ret)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func(image_row_free);
        uid_t self = getuid();
        int r;

        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, "ListImages", &m);
        if (r < 0 || (r = kiln_bus_call(bus, m, 0, &reply)) < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(sasuo)");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sasuo")) > 0) {
                ImageRow *row = g_new0(ImageRow, 1);
                const char *id, *path;
                uint32_t owner;

                r = sd_bus_message_read(reply, "s", &id);
                if (r >= 0)
                        r = sd_bus_message_read_strv(reply, &row->names);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "uo", &owner, &path);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0) {
                        image_row_free(row);
                        break;
                }
                row->id = g_strdup(id);
                row->owner = owner;
                row->path = g_strdup(path);
                if (only_own && row->owner != self)
                        image_row_free(row);
                else
                        g_ptr_array_add(rows, row);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return kiln_bus_log_parse_error(r);
        *ret = g_steal_pointer(&rows);
        return 0;
}

/* The rows as an aa{sv} message (never sent), printed by the JSON module as an array of objects. */
static int print_images_json(sd_bus *bus, GPtrArray *rows)
{
        g_autoptr(sd_bus_message) m = NULL;
        int r;

        r = kiln_cli_json_new_message(bus, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "a{sv}");
        for (guint i = 0; r >= 0 && i < rows->len; i++) {
                ImageRow *row = rows->pdata[i];
                r = sd_bus_message_open_container(m, 'a', "{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(m, "{sv}", "id", "s", row->id);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "names");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, row->names);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_append(m, "{sv}{sv}", "owner", "u", (uint32_t)row->owner, "path",
                                                  "o", row->path);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return kiln_cli_json_print_built(m, r);
}

static char *owner_name(uid_t uid)
{
        struct passwd *pw = getpwuid(uid);

        return pw ? g_strdup(pw->pw_name) : g_strdup_printf("%u", (unsigned)uid);
}

int kiln_verb_images(int argc, char **argv)
{
        gboolean json = FALSE, quiet = FALSE, all = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(GPtrArray) rows = NULL;

        const GOptionEntry entries[] = {
                {"all", 'a', 0, G_OPTION_ARG_NONE, &all, "Also show other users' images (those you may see)",
                 NULL},
                {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON array", NULL},
                {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Print only the images' ids", NULL},
                {NULL},
        };

        if (!kiln_parse_options("images", "", "List your images.", entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 1)
                return kiln_usage_error("images", "unexpected argument '%s'", argv[1]);
        if (json && quiet)
                return kiln_usage_error("images", "--json and --quiet cannot be used together");
        if (kiln_bus_open(&bus) < 0 || list_images(bus, !all, &rows) < 0)
                return KILN_EXIT_FAILURE;
        if (json)
                return print_images_json(bus, rows) < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
        if (!quiet)
                printf("%-14s%-14s%s\n", "IMAGE ID", "OWNER", "NAMES");
        for (guint i = 0; i < rows->len; i++) {
                ImageRow *row = rows->pdata[i];
                g_autofree char *owner = NULL, *names = NULL;

                if (quiet) {
                        printf("%.*s\n", SHORT_ID_LENGTH, row->id);
                        continue;
                }
                owner = owner_name(row->owner);
                names = row->names && row->names[0] ? g_strjoinv(",", row->names) : g_strdup("<none>");
                printf("%-14.*s%-14s%s\n", SHORT_ID_LENGTH, row->id, owner, names);
        }
        return KILN_EXIT_SUCCESS;
}

int kiln_verb_rmi(int argc, char **argv)
{
        gboolean force = FALSE;
        g_autoptr(sd_bus) bus = NULL;
        bool failed = false;

        const GOptionEntry entries[] = {
                {"force", 'f', 0, G_OPTION_ARG_NONE, &force,
                 "Remove images that builders were made from (the builders keep working)", NULL},
                {NULL},
        };

        if (!kiln_parse_options("rmi", "IMAGE…", "Remove images.", entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc < 2)
                return kiln_usage_error("rmi", "expected at least one IMAGE");
        if (kiln_bus_open(&bus) < 0)
                return KILN_EXIT_FAILURE;
        for (int i = 1; i < argc; i++) {
                g_autofree char *path = NULL, *id = NULL;
                g_autoptr(sd_bus_message) m = NULL, reply = NULL;

                if (kiln_bus_resolve(bus, "GetImage", argv[i], &path) < 0 ||
                    kiln_bus_get_string(bus, path, KILN_IMAGE_INTERFACE, "Id", &id) < 0 ||
                    kiln_bus_new_call(bus, path, KILN_IMAGE_INTERFACE, "Remove", &m) < 0) {
                        failed = true;
                        continue;
                }
                if (sd_bus_message_append(m, "a{sv}", 1, "force", "b", force) < 0 ||
                    kiln_bus_call(bus, m, 0, &reply) < 0) {
                        failed = true;
                        continue;
                }
                printf("%s\n", id);
        }
        return failed ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}

int kiln_verb_tag(int argc, char **argv)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *path = NULL;

        if (!kiln_parse_options("tag", "IMAGE NAME…", "Give an image more names.", NULL, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc < 3)
                return kiln_usage_error("tag", "expected IMAGE and at least one NAME");
        if (kiln_bus_open(&bus) < 0 || kiln_bus_resolve(bus, "GetImage", argv[1], &path) < 0)
                return KILN_EXIT_FAILURE;
        for (int i = 2; i < argc; i++) {
                g_clear_pointer(&m, sd_bus_message_unref);
                g_clear_pointer(&reply, sd_bus_message_unref);
                if (kiln_bus_new_call(bus, path, KILN_IMAGE_INTERFACE, "Tag", &m) < 0)
                        return KILN_EXIT_FAILURE;
                if (sd_bus_message_append(m, "s", argv[i]) < 0 || kiln_bus_call(bus, m, 0, &reply) < 0)
                        return KILN_EXIT_FAILURE;
        }
        return KILN_EXIT_SUCCESS;
}

static int call_push(sd_bus *bus, const char *path, int fd, const char *format, const char *name)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        int r;

        r = kiln_bus_new_call(bus, path, KILN_IMAGE_INTERFACE, "Push", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "hs", fd, format);
        if (r >= 0)
                r = name ? sd_bus_message_append(m, "a{sv}", 1, "name", "s", name)
                         : sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Push");
        return kiln_bus_call(bus, m, KILN_TIMEOUT_IMAGE_USEC, &reply);
}

/* oci:DIR[:TAG]: the archive stream goes through a pipe into the caller's own `tar`, which writes DIR
 * as the caller. */
static int push_to_dir(sd_bus *bus, const char *path, const char *dir, const char *tag)
{
        int pipefd[2];
        pid_t pid;
        int status, r;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                kiln_log("push: cannot create '%s': %s", dir, g_strerror(errno));
                return -errno;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                kiln_log("push: cannot make a pipe: %s", g_strerror(errno));
                return -errno;
        }
        pid = fork();
        if (pid < 0) {
                kiln_log("push: cannot fork: %s", g_strerror(errno));
                return -errno;
        }
        if (pid == 0) {
                if (dup2(pipefd[0], 0) < 0)
                        _exit(127);
                execlp("tar", "tar", "--no-same-owner", "-x", "-f", "-", "-C", dir, (char *)NULL);
                _exit(127);
        }
        close(pipefd[0]);
        r = call_push(bus, path, pipefd[1], "oci-archive", tag);
        close(pipefd[1]);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (r >= 0)
                        kiln_log("push: tar could not unpack the image into '%s'", dir);
                return r < 0 ? r : -EIO;
        }
        return r;
}

int kiln_verb_push(int argc, char **argv)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autofree char *path = NULL, *file = NULL, *name = NULL;
        const char *dest, *format;
        int fd, r;

        if (!kiln_parse_options("push", "IMAGE DESTINATION",
                                "Write an image to oci-archive:FILE, docker-archive:FILE[:NAME:TAG] or "
                                "oci:DIR[:TAG].",
                                NULL, &argc, &argv))
                return KILN_EXIT_FAILURE;
        if (argc != 3)
                return kiln_usage_error("push", "expected IMAGE and DESTINATION");
        dest = argv[2];
        if (g_str_has_prefix(dest, "oci-archive:")) {
                format = "oci-archive";
                dest += strlen("oci-archive:");
        } else if (g_str_has_prefix(dest, "docker-archive:")) {
                format = "docker-archive";
                dest += strlen("docker-archive:");
        } else if (g_str_has_prefix(dest, "oci:")) {
                format = "oci";
                dest += strlen("oci:");
        } else {
                return kiln_usage_error(
                        "push", "'%s' is not oci-archive:FILE, docker-archive:FILE or oci:DIR", dest);
        }
        /* The first ':' ends the path; what follows names the image inside the archive. */
        {
                const char *colon = strchr(dest, ':');
                file = colon ? g_strndup(dest, colon - dest) : g_strdup(dest);
                name = colon && colon[1] ? g_strdup(colon + 1) : NULL;
        }
        if (!*file)
                return kiln_usage_error("push", "the destination has no path");
        if (kiln_bus_open(&bus) < 0 || kiln_bus_resolve(bus, "GetImage", argv[1], &path) < 0)
                return KILN_EXIT_FAILURE;
        if (g_str_equal(format, "oci"))
                return push_to_dir(bus, path, file, name) < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
        /* Opened here, as the caller: the file is the caller's, wherever the caller may write. */
        fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
                kiln_log("push: cannot open '%s': %s", file, g_strerror(errno));
                return KILN_EXIT_FAILURE;
        }
        r = call_push(bus, path, fd, format, name);
        close(fd);
        if (r < 0)
                (void)unlink(file);
        return r < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}
