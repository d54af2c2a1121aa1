/* SPDX-License-Identifier: Apache-2.0 */
/* Run options: the a{sv} of Run, RunCaptured and Start, read by kiln_run_options_read() with every
 * per-key check it calls (user, paths, namespaces, capabilities, volumes, --mount shape, devices,
 * ulimits, sizes, runtime, seccomp profile names), then each --mount value through
 * kiln_run_mount_parse() as the run's resolution does.
 *
 * The input is text, one option a line, "KEY=VALUE", so that the corpus is readable:
 *   - the key's D-Bus type is the one the option table gives it (a copy below); unknown keys go as
 *     strings;
 *   - "as": elements separated by TAB; "b": "1" or "true"; "t": a decimal; "(qq)": "ROWS,COLS";
 *     "h": /dev/null; "a(hss)": elements separated by TAB, each "DESTINATION OPTIONS" (cut at the
 *     first space), with /dev/null as the descriptor;
 *   - a line starting with '!' sends the value with a wrong type (a string where an array is
 *     expected, an array of strings otherwise), for the type checks.
 * A string that is not valid UTF-8 cannot reach kilnd (the bus refuses the message); such inputs are
 * skipped. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "base/kiln-common.h"
#include "run/run-options.h"
#include "run/run-volumes.h"

static const struct {
        const char *key;
        const char *signature;
} key_types[] = {
        {"stdin", "h"},           {"stdout", "h"},           {"stderr", "h"},
        {"terminal", "b"},        {"terminal_size", "(qq)"}, {"env", "as"},
        {"cap_add", "as"},        {"cap_drop", "as"},        {"volumes", "as"},
        {"volume_fds", "a(hss)"}, {"mounts", "as"},          {"devices", "as"},
        {"ulimits", "as"},        {"runtime_args", "as"},    {"no_hosts", "b"},
        {"no_hostname", "b"},     {"no_pivot", "b"},         {"no_new_privileges", "b"},
        {"timeout", "t"},         {"detach", "b"},           {"group_add", "as"}, /* run parity */
};

static sd_bus *bus;
static int null_fd = -1;
static KilnConfig *limits;
static gboolean verbose; /* KILN_FUZZ_VERBOSE=1: say why an input was refused (for writing seeds) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        int pair[2];

        fuzz_setup_logging();
        verbose = g_getenv("KILN_FUZZ_VERBOSE") != NULL;
        limits = kiln_config_new_defaults();
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        /* sd-bus builds messages only for a bus that has been started; one end of a socket pair is
         * enough (nothing is ever sent: the message is sealed and read back in place). */
        if (null_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0 ||
            sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, pair[0], pair[0]) < 0 || sd_bus_start(bus) < 0)
                abort();
        return 0;
}

static const char *signature_of(const char *key)
{
        for (gsize i = 0; i < G_N_ELEMENTS(key_types); i++)
                if (g_str_equal(key_types[i].key, key))
                        return key_types[i].signature;
        return "s";
}

static int append_value(sd_bus_message *m, const char *signature, const char *value)
{
        int r;

        if (g_str_equal(signature, "s"))
                return sd_bus_message_append(m, "v", "s", value);
        if (g_str_equal(signature, "b"))
                return sd_bus_message_append(m, "v", "b",
                                             g_str_equal(value, "1") || g_str_equal(value, "true"));
        if (g_str_equal(signature, "t"))
                return sd_bus_message_append(m, "v", "t", (uint64_t)g_ascii_strtoull(value, NULL, 10));
        if (g_str_equal(signature, "h"))
                return sd_bus_message_append(m, "v", "h", null_fd);
        if (g_str_equal(signature, "(qq)")) {
                const char *comma = strchr(value, ',');
                return sd_bus_message_append(m, "v", "(qq)", (uint16_t)g_ascii_strtoull(value, NULL, 10),
                                             (uint16_t)(comma ? g_ascii_strtoull(comma + 1, NULL, 10) : 0));
        }
        if (g_str_equal(signature, "as")) {
                g_auto(GStrv) elements = g_strsplit(value, "\t", -1);
                r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, elements);
                return r < 0 ? r : sd_bus_message_close_container(m);
        }
        /* a(hss) */
        g_auto(GStrv) elements = g_strsplit(value, "\t", -1);
        r = sd_bus_message_open_container(m, 'v', "a(hss)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(hss)");
        for (char **e = elements; r >= 0 && *e; e++) {
                char *space = strchr(*e, ' ');
                if (space)
                        *space = '\0';
                r = sd_bus_message_append(m, "(hss)", null_fd, *e, space ? space + 1 : "");
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

static sd_bus_message *build_message(const char *text)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        int r;

        r = sd_bus_message_new_method_call(bus, &m, "org.kiln.Builder1", "/org/kiln/Builder1/builder/x",
                                           "org.kiln.Builder1.Builder", "Start");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (char **l = lines; r >= 0 && *l; l++) {
                gboolean wrong = **l == '!';
                const char *line = *l + wrong;
                const char *eq = strchr(line, '=');
                g_autofree char *key = NULL;
                const char *signature;

                if (!*line)
                        continue;
                key = eq ? g_strndup(line, eq - line) : g_strdup(line);
                signature = signature_of(key);
                if (wrong)
                        signature = g_str_equal(signature, "as") ? "s" : "as";
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', key);
                if (r >= 0)
                        r = append_value(m, signature, eq ? eq + 1 : "");
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_seal(m, 1, 0);
        if (r >= 0)
                r = sd_bus_message_rewind(m, 1);
        return r >= 0 ? g_steal_pointer(&m)
                      : NULL; /* not valid UTF-8, too deep, ...: the bus would refuse it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = fuzz_string(data, size);
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = build_message(text);
        g_auto(KilnRunOptions) options;
        g_autoptr(GError) error = NULL;

        kiln_run_options_init(&options);
        if (!m) {
                if (verbose)
                        fprintf(stderr, "not a message the bus would pass\n");
                return 0;
        }
        if (!kiln_run_options_read(&options, m, limits, &error)) {
                if (verbose)
                        fprintf(stderr, "refused: %s\n", error ? error->message : "(no error)");
                /* Every refusal is a kiln error with a message, never an empty one. */
                if (!error || !error->message || !*error->message)
                        abort();
                return 0;
        }
        /* Mounts are parsed when the run is resolved (run-volumes.h): as that does. */
        for (char **mnt = options.mounts; mnt && *mnt; mnt++) {
                g_autoptr(GError) mount_error = NULL;
                g_autoptr(KilnRunVolume) parsed = kiln_run_mount_parse("mounts[0]", *mnt, &mount_error);
                if (!parsed && (!mount_error || !mount_error->message || !*mount_error->message))
                        abort();
        }
        if (verbose)
                fprintf(stderr, "accepted\n");
        return 0;
}
