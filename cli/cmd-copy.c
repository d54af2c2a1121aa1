/* SPDX-License-Identifier: Apache-2.0 */
/* kiln copy / kiln add: Builder.Copy and Builder.CopyOut.
 *
 * In, the client reads the sources as the caller and sends kilnd a tar stream of them through a pipe
 * (kilnd never opens a caller's path, so root reads nothing on the caller's behalf). Every source is
 * opened once before anything is sent: one the caller cannot read stops the copy before kilnd is
 * called, and nothing is written. Out, kilnd writes a tar stream into a pipe and the client unpacks it
 * as the caller, so the files are his. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-client.h"
#include "cli-util.h"
#include "tar-module.h"
#include "verbs.h"

/* Copying can take long: a tree of gigabytes through a pipe. */
#define COPY_TIMEOUT_USEC (6ULL * 60 * 60 * 1000 * 1000)
static void warn(const char *message)
{
        kiln_log("%s", message);
}

static int copy_in(const char *verb, bool add, const char *chown_spec, const char *chmod_spec, int argc,
                   char **argv)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *path = NULL;
        g_autofree bool *is_archive = NULL;
        KilnTarSender s = {.fd = -1, .warn = warn};
        const KilnCliTar *tar = kiln_cli_tar();
        const char *dest = argv[argc - 1];
        g_autoptr(GThread) thread = NULL;
        int pipefd[2];
        bool as_file;
        int r;

        if (!tar)
                return KILN_EXIT_FAILURE;
        s.sources = argv + 2;
        s.n_sources = (gsize)argc - 3;
        s.add = add;
        is_archive = g_new0(bool, s.n_sources);
        s.is_archive = is_archive;
        for (gsize i = 0; i < s.n_sources; i++) {
                const char *src = s.sources[i];

                if (strstr(src, "://")) {
                        kiln_log("%s: URLs are not supported; download '%s' first", verb, src);
                        return KILN_EXIT_FAILURE;
                }
                if (add)
                        is_archive[i] = tar->is_archive(src);
        }
        /* Everything is opened once, as the caller, before kilnd is asked: a source he cannot read
         * stops the copy before anything is written. */
        if (!tar->check_sources(&s)) {
                kiln_log("%s", s.error);
                g_free(s.error);
                return KILN_EXIT_FAILURE;
        }
        /* One regular file to a destination that is not a directory (no trailing '/'): the file is
         * written as the destination, as cp does. kilnd still puts it inside if it is a directory. */
        as_file = false;
        if (s.n_sources == 1 && !is_archive[0] && !g_str_has_suffix(dest, "/")) {
                struct stat st;
                as_file = stat(s.sources[0], &st) == 0 && S_ISREG(st.st_mode);
        }

        r = kiln_bus_open_builder(argv[1], &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "Copy", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                kiln_log("cannot make a pipe: %s", g_strerror(errno));
                return KILN_EXIT_FAILURE;
        }
        r = sd_bus_message_append(m, "hs", pipefd[0], dest);
        close(pipefd[0]); /* the message holds its own copy */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && chown_spec)
                r = kiln_bus_append_option_string(m, "chown", chown_spec);
        if (r >= 0 && chmod_spec)
                r = kiln_bus_append_option_string(m, "chmod", chmod_spec);
        if (r >= 0 && as_file)
                r = sd_bus_message_append(m, "{sv}", "as-file", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                close(pipefd[1]);
                return kiln_bus_log_error(NULL, r, "Copy"), KILN_EXIT_FAILURE;
        }
        s.fd = pipefd[1];
        thread = g_thread_new("kiln-copy-send", tar->send, &s);
        r = kiln_bus_call(bus, m, COPY_TIMEOUT_USEC, &reply);
        /* Our copy of the read end goes with the message: if kilnd has stopped reading, the sender
         * gets EPIPE and ends. */
        g_clear_pointer(&m, sd_bus_message_unref);
        g_thread_join(g_steal_pointer(&thread));
        if (s.error) {
                kiln_log("%s", s.error);
                g_free(s.error);
                return KILN_EXIT_FAILURE;
        }
        return r < 0 ? KILN_EXIT_FAILURE : KILN_EXIT_SUCCESS;
}
/* --- out ------------------------------------------------------------------------------------------ */

static int copy_out(const char *verb, const char *source, const char *dest)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autofree char *builder = NULL, *path = NULL, *abs_dest = NULL, *receive_error = NULL;
        g_autoptr(GThread) thread = NULL;
        const char *colon = strchr(source, ':');
        KilnTarReceiver rc = {.fd = -1};
        const KilnCliTar *tar = kiln_cli_tar();
        int pipefd[2] = {-1, -1};
        bool to_stdout = g_str_equal(dest, "-");
        int r;

        if (!colon || colon == source || !colon[1])
                return kiln_usage_error(verb, "expected BUILDER SRC… DEST, or BUILDER:PATH DEST");
        if (!to_stdout && !tar)
                return KILN_EXIT_FAILURE;
        builder = g_strndup(source, (gsize)(colon - source));
        abs_dest = g_canonicalize_filename(dest, NULL);

        r = kiln_bus_open_builder(builder, &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "CopyOut", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (!to_stdout && pipe2(pipefd, O_CLOEXEC) < 0) {
                kiln_log("cannot make a pipe: %s", g_strerror(errno));
                return KILN_EXIT_FAILURE;
        }
        r = sd_bus_message_append(m, "sha{sv}", colon + 1, to_stdout ? STDOUT_FILENO : pipefd[1], 0);
        if (pipefd[1] >= 0)
                close(pipefd[1]); /* the message holds its own copy */
        if (r < 0) {
                if (pipefd[0] >= 0)
                        close(pipefd[0]);
                return kiln_bus_log_error(NULL, r, "CopyOut"), KILN_EXIT_FAILURE;
        }
        if (!to_stdout) {
                rc.fd = pipefd[0];
                rc.dest = abs_dest;
                thread = g_thread_new("kiln-copy-receive", tar->receive, &rc);
        }
        r = kiln_bus_call(bus, m, COPY_TIMEOUT_USEC, &reply);
        /* The last write end the client holds goes with the message: the receiver sees the end. */
        g_clear_pointer(&m, sd_bus_message_unref);
        if (thread)
                g_thread_join(g_steal_pointer(&thread));
        receive_error = g_steal_pointer(&rc.error);
        /* kilnd's refusal was printed; the receiver's complaint about the stream it cut short is not
         * news then. */
        if (r < 0)
                return KILN_EXIT_FAILURE;
        if (receive_error) {
                kiln_log("%s", receive_error);
                return KILN_EXIT_FAILURE;
        }
        return KILN_EXIT_SUCCESS;
}

static int run_verb(const char *verb, bool add, int argc, char **argv)
{
        g_autofree char *chown_spec = NULL, *chmod_spec = NULL;
        const GOptionEntry entries[] = {
                {"chown", 0, 0, G_OPTION_ARG_STRING, &chown_spec,
                 "Owner of the copied files inside the builder (names from its /etc/passwd and /etc/group)",
                 "USER[:GROUP]"},
                {"chmod", 0, 0, G_OPTION_ARG_STRING, &chmod_spec, "Mode of the copied files (octal)",
                 "MODE"},
                {NULL},
        };
        g_autofree char *summary = g_strdup_printf(
                "%s into a builder; 'kiln %s BUILDER:PATH DEST' copies out of it (DEST '-': a tar stream on "
                "stdout).",
                add ? "Copy files, directories and local tar archives (unpacked)"
                    : "Copy files and directories",
                verb);

        if (!kiln_parse_options(verb, "BUILDER SRC… DEST", summary, entries, &argc, &argv))
                return KILN_EXIT_FAILURE;
        /* kilnd may close the pipe at any time (a refusal, a limit): an error to report, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        if (argc == 3) {
                if (chown_spec || chmod_spec)
                        return kiln_usage_error(verb, "--chown and --chmod apply to copies into a builder");
                return copy_out(verb, argv[1], argv[2]);
        }
        if (argc < 4)
                return kiln_usage_error(verb, "expected BUILDER SRC… DEST, or BUILDER:PATH DEST");
        return copy_in(verb, add, chown_spec, chmod_spec, argc, argv);
}

int kiln_verb_copy(int argc, char **argv)
{
        return run_verb("copy", false, argc, argv);
}

int kiln_verb_add(int argc, char **argv)
{
        return run_verb("add", true, argc, argv);
}
