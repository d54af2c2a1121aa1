/* SPDX-License-Identifier: Apache-2.0 */
/* kiln run: Builder.Start with buildah run's flags, then Process.Wait, and exit with the command's
 * status.
 *
 * The command line is `kiln run [OPTION…] BUILDER [OPTION…] [--] [COMMAND [ARG…]]`: kiln's options
 * may come before and after BUILDER, up to the command's first word or `--`; everything from there on
 * is the command, so `kiln run B sh -c 'exit 42'` needs no `--`, and `kiln run B -- ls -l` passes
 * `-l` to ls.
 *
 * kiln passes its own stdin, stdout and stderr as descriptors; kilnd relays terminals itself. Start
 * (not Run) gives us the Process object, so that while we wait (Wait, asynchronously, on an sd-event
 * loop) SIGWINCH becomes Process.Resize and SIGINT, SIGTERM and SIGHUP become Process.Kill. With
 * --terminal on a terminal, that terminal is in raw mode from Start's answer until we exit, and is
 * restored on every way out. */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "base/size.h"
#include "bus-client.h"
#include "cli-util.h"
#include "net-flags.h"
#include "verbs.h"

#ifndef KILN_PROCESS_INTERFACE
#define KILN_PROCESS_INTERFACE "org.kiln.Builder1.Process"
#endif

/* Wait answers when the command exits, however long that takes. */
#define TIMEOUT_INFINITE_USEC UINT64_MAX

G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_event, sd_event_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_slot, sd_bus_slot_unref)

/* ---- the command line ---- */

typedef struct {
        GPtrArray *env, *volumes, *mounts, *devices, *ulimits, *cap_add, *cap_drop, *runtime_flags;
        GPtrArray *valid_exit_codes;
        GPtrArray *dns, *dns_search, *dns_option, *add_host; /* net-flags.h */
        char *hostname, *isolation, *network, *pid, *ipc, *uts, *cgroupns, *runtime, *user, *working_dir;
        char *timeout;
        char *pids_limit, *memory, *cpu_weight;
        char *userns, *shm_size, *seccomp_profile;
        int no_new_privileges; /* -1: not given (kilnd's default) */
        gboolean no_hosts, no_hostname, no_pivot, terminal;
        /* Run parity (issue 12) */
        GPtrArray *group_add, *secrets;
} RunFlags;

static void run_flags_clear(RunFlags *f)
{
        g_clear_pointer(&f->env, g_ptr_array_unref);
        g_clear_pointer(&f->volumes, g_ptr_array_unref);
        g_clear_pointer(&f->mounts, g_ptr_array_unref);
        g_clear_pointer(&f->devices, g_ptr_array_unref);
        g_clear_pointer(&f->ulimits, g_ptr_array_unref);
        g_clear_pointer(&f->cap_add, g_ptr_array_unref);
        g_clear_pointer(&f->cap_drop, g_ptr_array_unref);
        g_clear_pointer(&f->runtime_flags, g_ptr_array_unref);
        g_clear_pointer(&f->valid_exit_codes, g_ptr_array_unref);
        g_clear_pointer(&f->dns, g_ptr_array_unref);
        g_clear_pointer(&f->dns_search, g_ptr_array_unref);
        g_clear_pointer(&f->dns_option, g_ptr_array_unref);
        g_clear_pointer(&f->add_host, g_ptr_array_unref);
        g_clear_pointer(&f->hostname, g_free);
        g_clear_pointer(&f->isolation, g_free);
        g_clear_pointer(&f->network, g_free);
        g_clear_pointer(&f->pid, g_free);
        g_clear_pointer(&f->ipc, g_free);
        g_clear_pointer(&f->uts, g_free);
        g_clear_pointer(&f->cgroupns, g_free);
        g_clear_pointer(&f->runtime, g_free);
        g_clear_pointer(&f->user, g_free);
        g_clear_pointer(&f->working_dir, g_free);
        g_clear_pointer(&f->timeout, g_free);
        g_clear_pointer(&f->pids_limit, g_free);
        g_clear_pointer(&f->memory, g_free);
        g_clear_pointer(&f->cpu_weight, g_free);
        g_clear_pointer(&f->userns, g_free);
        g_clear_pointer(&f->shm_size, g_free);
        g_clear_pointer(&f->seccomp_profile, g_free);
        g_clear_pointer(&f->group_add, g_ptr_array_unref);
        g_clear_pointer(&f->secrets, g_ptr_array_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RunFlags, run_flags_clear)

/* The options are parsed in two passes (before and after BUILDER); GLib would replace an array
 * option's value on the second pass, so list options collect through callbacks instead. */
static gboolean add_to(GPtrArray **list, const char *value)
{
        if (!*list)
                *list = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(*list, g_strdup(value));
        return TRUE;
}

/* buildah's comma-separated list flags (pflag StringSlice): "a,b" is two values. */
static gboolean add_split(GPtrArray **list, const char *value)
{
        g_auto(GStrv) parts = g_strsplit(value, ",", -1);

        for (char **p = parts; *p; p++)
                if (**p)
                        add_to(list, *p);
        return TRUE;
}

#define DEFINE_COLLECT(field, adder)                                                                        \
        static gboolean collect_##field(G_GNUC_UNUSED const char *name, const char *value, gpointer data,   \
                                        G_GNUC_UNUSED GError **e)                                           \
        {                                                                                                   \
                return adder(&((RunFlags *)data)->field, value);                                            \
        }

DEFINE_COLLECT(env, add_to)
DEFINE_COLLECT(volumes, add_to)
DEFINE_COLLECT(mounts, add_to)
DEFINE_COLLECT(devices, add_to)
DEFINE_COLLECT(ulimits, add_to)
DEFINE_COLLECT(cap_add, add_split)
DEFINE_COLLECT(cap_drop, add_split)
DEFINE_COLLECT(runtime_flags, add_split)
DEFINE_COLLECT(valid_exit_codes, add_split)
DEFINE_COLLECT(dns, add_split)
DEFINE_COLLECT(dns_search, add_split)
DEFINE_COLLECT(dns_option, add_split)
DEFINE_COLLECT(add_host, add_split)
DEFINE_COLLECT(group_add, add_split)
DEFINE_COLLECT(secrets, add_to)

/* --security-opt as buildah takes it, the values kilnd has options for: seccomp=unconfined or a
 * profile name (never a path: kilnd reads only its own profiles), and no-new-privileges[=BOOL]. Any
 * other value (apparmor=, label=, mask=, ...) is a usage error naming it rather than silently doing
 * nothing. */
static gboolean collect_security_opt(G_GNUC_UNUSED const char *name, const char *value, gpointer data,
                                     GError **error)
{
        RunFlags *f = data;
        bool nnp = true;

        if (g_str_has_prefix(value, "seccomp=") && value[strlen("seccomp=")]) {
                g_free(f->seccomp_profile);
                f->seccomp_profile = g_strdup(value + strlen("seccomp="));
                return TRUE;
        }
        if (g_str_equal(value, "no-new-privileges") ||
            (g_str_has_prefix(value, "no-new-privileges=") &&
             kiln_parse_bool(value + strlen("no-new-privileges="), &nnp))) {
                f->no_new_privileges = nnp;
                return TRUE;
        }
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--security-opt '%s' is not supported: seccomp=unconfined|PROFILE or "
                    "no-new-privileges[=true|false]",
                    value);
        return FALSE;
}

/* One pass of GLib's parser in strict POSIX mode: it stops at the first argument that is not an
 * option (BUILDER, then the command's first word) and leaves a "--" in argv. */
static bool parse_pass(GOptionContext *context, const GOptionEntry *entries, int *argc, char ***argv)
{
        g_autoptr(GError) error = NULL;

        if (!kiln_take_switches(entries, true, argc, argv, &error) ||
            !g_option_context_parse(context, argc, argv, &error)) {
                kiln_usage_error("run", "%s", error->message);
                return false;
        }
        return true;
}

static bool is_dashdash(int argc, char **argv, int i)
{
        return i < argc && g_str_equal(argv[i], "--");
}

/* Parses argv ("run", …) into flags, BUILDER and the command (a new strv, possibly empty). */
static bool parse_command_line(RunFlags *f, int argc, char **argv, char **ret_builder, char ***ret_command)
{
        g_autoptr(GOptionContext) context = NULL;
        GOptionGroup *group;
        int first;

        const GOptionEntry entries[] = {
                {"cap-add", 0, 0, G_OPTION_ARG_CALLBACK, collect_cap_add,
                 "Add a capability (CAP_X or X; ALL; comma-separated lists too)", "CAP"},
                {"cap-drop", 0, 0, G_OPTION_ARG_CALLBACK, collect_cap_drop,
                 "Drop a capability (CAP_X or X; ALL; comma-separated lists too)", "CAP"},
                {"cgroupns", 0, 0, G_OPTION_ARG_STRING, &f->cgroupns,
                 "Cgroup namespace: private, host or a path", "HOW"},
                {"device", 0, 0, G_OPTION_ARG_CALLBACK, collect_devices,
                 "Add a host device, a directory of them, or a CDI device",
                 "HOST[:CONTAINER[:PERMISSIONS]] or VENDOR/CLASS=NAME"},
                {"env", 'e', 0, G_OPTION_ARG_CALLBACK, collect_env,
                 "Set a variable for this run (K=V; K or PREFIX* copy kiln's own)", "K=V"},
                {"group-add", 0, 0, G_OPTION_ARG_CALLBACK, collect_group_add,
                 "Add a supplementary group (a name in the image's /etc/group, a gid, or keep-groups)",
                 "GROUP"},
                {"hostname", 0, 0, G_OPTION_ARG_STRING, &f->hostname, "Host name in the container", "NAME"},
                {"ipc", 0, 0, G_OPTION_ARG_STRING, &f->ipc, "IPC namespace: private, host or a path", "HOW"},
                {"isolation", 0, 0, G_OPTION_ARG_STRING, &f->isolation, "Isolation: oci or chroot", "TYPE"},
                {"mount", 0, 0, G_OPTION_ARG_CALLBACK, collect_mounts,
                 "Attach a mount (type=bind|tmpfs|cache,…; a bind is read-only unless rw)", "MOUNT"},
                {"network", 0, 0, G_OPTION_ARG_STRING, &f->network,
                 "Network: private, none, host, pasta[:OPTS], slirp4netns[:OPTS] or a path", "HOW"},
                {"dns", 0, 0, G_OPTION_ARG_CALLBACK, collect_dns, "Nameserver (an IP, or none)", "IP"},
                {"dns-search", 0, 0, G_OPTION_ARG_CALLBACK, collect_dns_search, "Search domain", "DOMAIN"},
                {"dns-option", 0, 0, G_OPTION_ARG_CALLBACK, collect_dns_option, "Resolver option", "OPTION"},
                {"add-host", 0, 0, G_OPTION_ARG_CALLBACK, collect_add_host, "Add a line to /etc/hosts",
                 "NAME:IP"},
                {"net", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &f->network, "Same as --network",
                 "HOW"},
                {"no-hostname", 0, 0, G_OPTION_ARG_NONE, &f->no_hostname, "Do not generate /etc/hostname",
                 NULL},
                {"no-hosts", 0, 0, G_OPTION_ARG_NONE, &f->no_hosts, "Do not generate /etc/hosts", NULL},
                {"no-pivot", 0, 0, G_OPTION_ARG_NONE, &f->no_pivot, "Do not use pivot_root", NULL},
                {"pid", 0, 0, G_OPTION_ARG_STRING, &f->pid, "PID namespace: private, host or a path", "HOW"},
                {"runtime", 0, 0, G_OPTION_ARG_STRING, &f->runtime, "OCI runtime (name or path)", "RUNTIME"},
                {"runtime-flag", 0, 0, G_OPTION_ARG_CALLBACK, collect_runtime_flags,
                 "Global flag for the runtime, without its leading --", "FLAG"},
                {"security-opt", 0, 0, G_OPTION_ARG_CALLBACK, collect_security_opt,
                 "seccomp=unconfined|PROFILE or no-new-privileges[=true|false]", "OPT"},
                {"secret", 0, 0, G_OPTION_ARG_CALLBACK, collect_secrets,
                 "A secret for --mount type=secret, read here, as you, from a file or a variable",
                 "id=ID,src=FILE|env=VAR"},
                {"shm-size", 0, 0, G_OPTION_ARG_STRING, &f->shm_size,
                 "Size of /dev/shm (bytes, or with b, k, m, g)", "SIZE"},
                {"terminal", 't', 0, G_OPTION_ARG_NONE, &f->terminal, "Give the command a terminal", NULL},
                {"tty", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &f->terminal, "Same as --terminal",
                 NULL},
                {"pids-limit", 0, 0, G_OPTION_ARG_STRING, &f->pids_limit,
                 "Most processes the command may have (-1: no limit; above kiln.conf's needs "
                 "run-privileged)",
                 "N"},
                {"memory", 'm', 0, G_OPTION_ARG_STRING, &f->memory,
                 "Memory limit (bytes, or with b, k, m, g; above kiln.conf's needs run-privileged)", "SIZE"},
                {"cpu-weight", 0, 0, G_OPTION_ARG_STRING, &f->cpu_weight,
                 "CPU weight, 1 to 10000 (100: the default; above kiln.conf's needs run-privileged)", "N"},
                {"timeout", 0, 0, G_OPTION_ARG_STRING, &f->timeout,
                 "Kill the command after this long (seconds, or like 1m30s)", "DURATION"},
                {"ulimit", 0, 0, G_OPTION_ARG_CALLBACK, collect_ulimits, "Resource limit",
                 "TYPE=SOFT[:HARD]"},
                {"user", 0, 0, G_OPTION_ARG_STRING, &f->user, "User (and group) to run as", "USER[:GROUP]"},
                {"userns", 0, 0, G_OPTION_ARG_STRING, &f->userns,
                 "User namespace: auto (private, mapped to your subordinate IDs) or host", "HOW"},
                {"uts", 0, 0, G_OPTION_ARG_STRING, &f->uts, "UTS namespace: private, host or a path", "HOW"},
                {"valid-exit-codes", 0, 0, G_OPTION_ARG_CALLBACK, collect_valid_exit_codes,
                 "Exit statuses that count as success: kiln exits 0 for them", "N[,N…]"},
                {"volume", 'v', 0, G_OPTION_ARG_CALLBACK, collect_volumes,
                 "Bind mount a host path (opened by kiln, as you)", "SRC:DST[:OPTS]"},
                {"workingdir", 0, 0, G_OPTION_ARG_STRING, &f->working_dir,
                 "Working directory of the command", "DIR"},
                {NULL},
        };

        context = g_option_context_new("BUILDER [--] [COMMAND [ARG…]]");
        g_option_context_set_summary(
                context, "Run a command in a builder. Options may also follow BUILDER, up to the command's "
                         "first word or '--'.\nWithout COMMAND, the builder's entrypoint and cmd run.");
        g_option_context_set_description(
                context, "Exit status: the command's (128+N when killed by signal N, 126 when it cannot be "
                         "executed, 127 when it is not found), 0 for a status listed in --valid-exit-codes "
                         "(and 1 for a status 0 that is not listed), 125 when kiln itself fails.\n");
        g_option_context_set_strict_posix(context, TRUE);
        group = g_option_group_new("run", "", "", f, NULL);
        g_option_group_add_entries(group, entries);
        g_option_context_set_main_group(context, group);

        /* Options before BUILDER. */
        if (!parse_pass(context, entries, &argc, &argv))
                return false;
        first = 1;
        if (is_dashdash(argc, argv, first)) {
                /* `kiln run [OPTION…] -- BUILDER [--] COMMAND…`: no more options after BUILDER. */
                first++;
                if (first >= argc) {
                        kiln_usage_error("run", "expected a BUILDER");
                        return false;
                }
                *ret_builder = g_strdup(argv[first++]);
        } else {
                int rest_argc;
                char **rest_argv;

                if (first >= argc) {
                        kiln_usage_error("run", "expected a BUILDER");
                        return false;
                }
                *ret_builder = g_strdup(argv[first]);

                /* Options after BUILDER: parse [verb, everything after BUILDER]. */
                argv[first] = argv[0];
                rest_argc = argc - first;
                rest_argv = argv + first;
                if (!parse_pass(context, entries, &rest_argc, &rest_argv))
                        return false;
                argc = rest_argc;
                argv = rest_argv;
                first = 1;
        }
        /* As buildah: one "--" right before the command is dropped. */
        if (is_dashdash(argc, argv, first))
                first++;

        *ret_command = g_new0(char *, argc - first + 1);
        for (int i = first; i < argc; i++)
                (*ret_command)[i - first] = g_strdup(argv[i]);
        return true;
}

/* A decimal number ("90", "1.5") at *p; false if there is none. */
static bool parse_decimal(const char **p, double *ret)
{
        const char *q = *p;
        double value = 0, scale = 1;
        bool digits = false;

        for (; g_ascii_isdigit(*q); q++, digits = true)
                value = value * 10 + (*q - '0');
        if (*q == '.')
                for (q++; g_ascii_isdigit(*q); q++, digits = true)
                        value += (*q - '0') * (scale /= 10);
        if (!digits)
                return false;
        *p = q;
        *ret = value;
        return true;
}

/* "90" or "1.5" (seconds), or a sequence like "1m30s", "500ms", "2h": a positive duration in µs. */
static bool parse_duration(const char *text, guint64 *ret_usec)
{
        static const struct {
                const char *suffix;
                double usec;
        } units[] = {
                /* "ms" before "m" and "s". */
                {"ms", 1e3}, {"us", 1}, {"µs", 1}, {"h", 3600e6}, {"m", 60e6}, {"s", 1e6},
        };
        const char *p = text;
        double total = 0, value;

        if (!parse_decimal(&p, &value))
                return false;
        if (*p == '\0')
                total = value * 1e6; /* a bare number: seconds */
        else
                for (;;) {
                        size_t i;

                        for (i = 0; i < G_N_ELEMENTS(units); i++)
                                if (g_str_has_prefix(p, units[i].suffix))
                                        break;
                        if (i == G_N_ELEMENTS(units))
                                return false;
                        total += value * units[i].usec;
                        p += strlen(units[i].suffix);
                        if (*p == '\0')
                                break;
                        if (!parse_decimal(&p, &value))
                                return false;
                }
        if (total < 1 || total > (double)G_MAXINT64)
                return false;
        *ret_usec = (guint64)total;
        return true;
}

static bool parse_valid_exit_codes(GPtrArray *texts, GArray **ret)
{
        g_autoptr(GArray) codes = g_array_new(FALSE, FALSE, sizeof(int));

        for (guint i = 0; texts && i < texts->len; i++) {
                const char *text = g_ptr_array_index(texts, i);
                guint64 n;
                int code;

                if (!g_ascii_string_to_unsigned(text, 10, 0, 255, &n, NULL)) {
                        kiln_usage_error("run", "--valid-exit-codes: '%s' is not an exit status (0 to 255)",
                                         text);
                        return false;
                }
                code = (int)n;
                g_array_append_val(codes, code);
        }
        *ret = g_steal_pointer(&codes);
        return true;
}

/* buildah's namespace values: "container" is a private namespace, a path is one to join. */
static char *namespace_value(const char *value)
{
        if (!value)
                return NULL;
        if (g_str_equal(value, "container"))
                return g_strdup("private");
        if (value[0] == '/')
                return g_strconcat("ns:", value, NULL);
        return g_strdup(value);
}

/* `-e K` and `-e PREFIX*` take values from kiln's own environment, as buildah does (a name that is
 * not set there is left out); `-e K=V` is sent as it is. */
static char **resolve_env(GPtrArray *specs)
{
        g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
        g_auto(GStrv) environ_copy = g_get_environ();

        for (guint i = 0; specs && i < specs->len; i++) {
                const char *spec = g_ptr_array_index(specs, i);
                g_autofree char *prefix = NULL;

                if (strchr(spec, '=')) {
                        g_ptr_array_add(out, g_strdup(spec));
                        continue;
                }
                if (g_str_equal(spec, "*"))
                        prefix = g_strdup("");
                else if (g_str_has_suffix(spec, "*"))
                        prefix = g_strndup(spec, strlen(spec) - 1);
                else
                        prefix = g_strconcat(spec, "=", NULL);
                for (char **e = environ_copy; *e; e++)
                        if (g_str_has_prefix(*e, prefix))
                                g_ptr_array_add(out, g_strdup(*e));
        }
        g_ptr_array_add(out, NULL);
        return (char **)g_ptr_array_free(g_steal_pointer(&out), FALSE);
}

/* ---- volumes: the sources are opened here, with the caller's own credentials ---- */

typedef struct {
        int fd;
        char *destination;
        char *options;
} VolumeFd;

static void volume_fd_clear(gpointer data)
{
        VolumeFd *v = data;

        kiln_close_fdp(&v->fd);
        g_free(v->destination);
        g_free(v->options);
}

/* SRC:DST[:OPTS] → an open SRC (a directory as O_PATH, anything else read-only), DST and OPTS. */
static bool open_volumes(GPtrArray *specs, GArray **ret)
{
        g_autoptr(GArray) volumes = g_array_new(FALSE, TRUE, sizeof(VolumeFd));

        g_array_set_clear_func(volumes, volume_fd_clear);
        for (guint i = 0; specs && i < specs->len; i++) {
                const char *spec = g_ptr_array_index(specs, i);
                g_auto(GStrv) parts = g_strsplit(spec, ":", 4);
                guint n = g_strv_length(parts);
                VolumeFd v = {.fd = -1};

                if (n < 2 || n > 3 || !*parts[0] || !*parts[1]) {
                        kiln_usage_error("run", "--volume: '%s' is not SRC:DST[:OPTS]", spec);
                        return false;
                }
                v.fd = open(parts[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (v.fd < 0 && errno == ENOTDIR)
                        v.fd = open(parts[0], O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
                if (v.fd < 0) {
                        kiln_log("cannot open the source of volume '%s': %s", spec, g_strerror(errno));
                        return false;
                }
                v.destination = g_strdup(parts[1]);
                v.options = g_strdup(n == 3 ? parts[2] : "");
                g_array_append_val(volumes, v);
        }
        *ret = g_steal_pointer(&volumes);
        return true;
}

/* ---- run parity: secrets, read here as the caller and handed over as sealed memfds ---- */

#define SECRET_MAX (512 * 1024) /* kilnd's KILN_SECRET_MAX */

typedef struct {
        char *id;
        int fd;
} SecretFd;

static void secret_fd_clear(gpointer data)
{
        SecretFd *s = data;

        kiln_close_fdp(&s->fd);
        g_free(s->id);
}

/* The bytes of FILE (read with our own credentials: kilnd never opens it) or of the variable VAR. */
static bool secret_bytes(const char *spec, const char *src, const char *env, GByteArray *out)
{
        _cleanup_close_ int fd = -1;
        guint8 buf[16384];

        if (env) {
                const char *value = g_getenv(env);
                if (!value) {
                        kiln_usage_error("run", "--secret '%s': the variable %s is not set", spec, env);
                        return false;
                }
                g_byte_array_append(out, (const guint8 *)value, (guint)strlen(value));
                return out->len <= SECRET_MAX ||
                       (kiln_usage_error("run", "--secret '%s': larger than %d bytes", spec, SECRET_MAX),
                        false);
        }
        fd = open(src, O_RDONLY | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
                kiln_log("cannot open the secret '%s': %s", src, g_strerror(errno));
                return false;
        }
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        kiln_log("cannot read the secret '%s': %s", src, g_strerror(errno));
                        return false;
                }
                if (n == 0)
                        return true;
                g_byte_array_append(out, buf, (guint)n);
                if (out->len > SECRET_MAX) {
                        kiln_usage_error("run", "--secret '%s': larger than %d bytes", spec, SECRET_MAX);
                        return false;
                }
        }
}

/* id=ID,src=FILE (or source=, or a bare path with type=file) | env=VAR → a memfd sealed against any
 * change, so that kilnd reads what we read. */
static bool open_secret(const char *spec, SecretFd *ret)
{
        g_auto(GStrv) parts = g_strsplit(spec, ",", -1);
        g_autoptr(GByteArray) bytes = g_byte_array_new();
        const char *id = NULL, *src = NULL, *env = NULL, *type = NULL;
        _cleanup_close_ int fd = -1;
        const guint8 *p;
        gsize left;

        for (char **x = parts; *x; x++) {
                if (g_str_has_prefix(*x, "id="))
                        id = *x + 3;
                else if (g_str_has_prefix(*x, "src=") || g_str_has_prefix(*x, "source="))
                        src = strchr(*x, '=') + 1;
                else if (g_str_has_prefix(*x, "env="))
                        env = *x + 4;
                else if (g_str_has_prefix(*x, "type="))
                        type = *x + 5;
                else {
                        kiln_usage_error("run", "--secret '%s': '%s' is not id=, src=, env= or type=", spec,
                                         *x);
                        return false;
                }
        }
        if (type && !g_str_equal(type, "file") && !g_str_equal(type, "env")) {
                kiln_usage_error("run", "--secret '%s': type is file or env", spec);
                return false;
        }
        if (!id || !*id || (!src == !env)) {
                kiln_usage_error("run", "--secret '%s' is not id=ID,src=FILE or id=ID,env=VAR", spec);
                return false;
        }
        if (!secret_bytes(spec, src, env, bytes))
                return false;
        fd = memfd_create("kiln-secret", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        for (p = bytes->data, left = bytes->len; fd >= 0 && left > 0;) {
                ssize_t n = write(fd, p, left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                p += n;
                left -= (gsize)n;
        }
        explicit_bzero(bytes->data, bytes->len);
        if (fd < 0 || left > 0 ||
            fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
                kiln_log("cannot hand over the secret '%s': %s", id, g_strerror(errno));
                return false;
        }
        ret->id = g_strdup(id);
        ret->fd = g_steal_fd(&fd);
        return true;
}

static bool open_secrets(GPtrArray *specs, GArray **ret)
{
        g_autoptr(GArray) secrets = g_array_new(FALSE, TRUE, sizeof(SecretFd));

        g_array_set_clear_func(secrets, secret_fd_clear);
        for (guint i = 0; specs && i < specs->len; i++) {
                SecretFd s = {.fd = -1};
                if (!open_secret(g_ptr_array_index(specs, i), &s))
                        return false;
                g_array_append_val(secrets, s);
        }
        *ret = g_steal_pointer(&secrets);
        return true;
}

static int append_secrets(sd_bus_message *m, GArray *secrets)
{
        int r;

        if (!secrets || secrets->len == 0)
                return 0;
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "secrets");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a{sh}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sh}");
        for (guint i = 0; r >= 0 && i < secrets->len; i++) {
                SecretFd *s = &g_array_index(secrets, SecretFd, i);
                r = sd_bus_message_append(m, "{sh}", s->id, s->fd);
        }
        for (int depth = 0; r >= 0 && depth < 3; depth++)
                r = sd_bus_message_close_container(m);
        return r;
}

/* ---- the terminal ---- */

static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

/* Async-signal-safe: tcsetattr is. */
static void restore_terminal(void)
{
        if (!termios_saved)
                return;
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
        termios_saved = 0;
}

/* A crash must not leave the user's terminal raw: restore it, then die of the same signal. */
static void on_fatal_signal(int signo)
{
        restore_terminal();
        (void)raise(signo); /* SA_RESETHAND: the default action this time */
}

static void restore_terminal_on_fatal_signals(void)
{
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGPIPE, SIGQUIT};
        struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND | SA_NODEFER};

        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < G_N_ELEMENTS(fatal); i++)
                (void)sigaction(fatal[i], &sa, NULL);
}

/* Raw mode on our stdin terminal, so that every key (^C included) goes to the container's terminal.
 * Restored by every way out: the normal paths call restore_terminal(), atexit() and fatal signals
 * are the last resort. */
static void make_terminal_raw(void)
{
        static bool handlers_installed;
        struct termios raw;

        if (termios_saved || isatty(STDIN_FILENO) != 1 || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
                return;
        if (!handlers_installed) {
                atexit(restore_terminal);
                restore_terminal_on_fatal_signals();
                handlers_installed = true;
        }
        raw = saved_termios;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
                termios_saved = 1;
}

/* The size of our terminal (stdout's, else stdin's or stderr's); false if none has one. */
static bool terminal_size(guint16 *rows, guint16 *cols)
{
        static const int fds[] = {STDOUT_FILENO, STDIN_FILENO, STDERR_FILENO};

        for (size_t i = 0; i < G_N_ELEMENTS(fds); i++) {
                struct winsize ws;

                if (ioctl(fds[i], TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
                        *rows = ws.ws_row;
                        *cols = ws.ws_col;
                        return true;
                }
        }
        return false;
}

/* ---- the Start call ---- */

static int append_strv_option(sd_bus_message *m, const char *key, char **value)
{
        if (!value || !*value)
                return 0;
        return kiln_bus_append_option_strv(m, key, value);
}

static int append_list_option(sd_bus_message *m, const char *key, GPtrArray *list)
{
        g_autofree char **strv = NULL;

        if (!list || list->len == 0)
                return 0;
        /* A borrowed view: the strings stay the list's. */
        strv = g_new0(char *, list->len + 1);
        memcpy(strv, list->pdata, list->len * sizeof(char *));
        return kiln_bus_append_option_strv(m, key, strv);
}

static int append_string_option(sd_bus_message *m, const char *key, const char *value)
{
        return value ? kiln_bus_append_option_string(m, key, value) : 0;
}

static int append_volume_fds(sd_bus_message *m, GArray *volumes)
{
        int r;

        if (volumes->len == 0)
                return 0;
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "volume_fds");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(hss)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(hss)");
        for (guint i = 0; r >= 0 && i < volumes->len; i++) {
                VolumeFd *v = &g_array_index(volumes, VolumeFd, i);

                r = sd_bus_message_append(m, "(hss)", v->fd, v->destination, v->options);
        }
        for (int depth = 0; r >= 0 && depth < 3; depth++)
                r = sd_bus_message_close_container(m);
        return r;
}

typedef struct {
        char **env;
        char *network, *pid, *ipc, *uts, *cgroupns;
        char **runtime_args;
        GArray *volumes; /* VolumeFd */
        guint64 timeout_usec;
        gboolean has_pids_limit, has_memory;
        gint64 pids_limit;
        guint64 memory, cpu_weight;
        GArray *secrets; /* run parity: SecretFd */
} StartOptions;

static void start_options_clear(StartOptions *s)
{
        g_strfreev(s->env);
        g_free(s->network);
        g_free(s->pid);
        g_free(s->ipc);
        g_free(s->uts);
        g_free(s->cgroupns);
        g_strfreev(s->runtime_args);
        if (s->volumes)
                g_array_unref(s->volumes);
        if (s->secrets)
                g_array_unref(s->secrets);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(StartOptions, start_options_clear)

/* --pids-limit, --memory, --cpu-weight as podman spells them: a count (-1: no limit), a size with an
 * optional b, k, m or g (powers of 1024), a weight. */
static bool parse_resources(const RunFlags *f, StartOptions *s)
{
        char *end = NULL;

        if (f->pids_limit) {
                s->pids_limit = g_ascii_strtoll(f->pids_limit, &end, 10);
                if (!*f->pids_limit || *end || s->pids_limit < -1 || s->pids_limit == 0) {
                        kiln_usage_error("run", "--pids-limit: '%s' is not a positive number or -1",
                                         f->pids_limit);
                        return false;
                }
                s->has_pids_limit = true;
        }
        if (f->memory) {
                if (!kiln_parse_size(f->memory, &s->memory) || s->memory == 0) {
                        kiln_usage_error("run", "--memory: '%s' is not a size such as 512m", f->memory);
                        return false;
                }
                s->has_memory = true;
        }
        if (f->cpu_weight) {
                s->cpu_weight = g_ascii_strtoull(f->cpu_weight, &end, 10);
                if (!g_ascii_isdigit(f->cpu_weight[0]) || *end || s->cpu_weight < 1 ||
                    s->cpu_weight > 10000) {
                        kiln_usage_error("run", "--cpu-weight: '%s' is not between 1 and 10000",
                                         f->cpu_weight);
                        return false;
                }
        }
        return true;
}

/* Our stdin, stdout and stderr, those that are open; a closed one is left out (kilnd uses /dev/null). */
static int append_stdio(sd_bus_message *m)
{
        static const char *const keys[] = {"stdin", "stdout", "stderr"};
        int r = 0;

        for (int fd = 0; r >= 0 && fd < 3; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        r = sd_bus_message_append(m, "{sv}", keys[fd], "h", fd); /* sd-bus sends a copy */
        return r;
}

/* A collected list as a new strv; NULL when the flag was not given. */
static char **list_to_strv(GPtrArray *list)
{
        char **v;

        if (!list)
                return NULL;
        v = g_new0(char *, list->len + 1);
        for (guint i = 0; i < list->len; i++)
                v[i] = g_strdup(list->pdata[i]);
        return v;
}

static int build_start_options(sd_bus_message *m, const RunFlags *f, const StartOptions *s)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = append_stdio(m);
        if (r >= 0 && f->terminal) {
                guint16 rows, cols;

                r = sd_bus_message_append(m, "{sv}", "terminal", "b", 1);
                if (r >= 0 && terminal_size(&rows, &cols))
                        r = sd_bus_message_append(m, "{sv}", "terminal_size", "(qq)", rows, cols);
        }
        if (r >= 0)
                r = append_strv_option(m, "env", s->env);
        if (r >= 0)
                r = append_string_option(m, "user", f->user);
        if (r >= 0)
                r = append_string_option(m, "working_dir", f->working_dir);
        if (r >= 0)
                r = append_string_option(m, "hostname", f->hostname);
        if (r >= 0)
                r = append_string_option(m, "isolation", f->isolation);
        if (r >= 0) {
                /* The network flags as kiln from and kiln config send them (net-flags.h). */
                KilnNetFlags net = {
                        .network = f->network,
                        .dns = list_to_strv(f->dns),
                        .dns_search = list_to_strv(f->dns_search),
                        .dns_option = list_to_strv(f->dns_option),
                        .add_host = list_to_strv(f->add_host),
                        .no_hosts = f->no_hosts,
                };
                r = kiln_net_flags_append(m, &net);
                net.network = NULL; /* f's */
                kiln_net_flags_clear(&net);
        }
        if (r >= 0)
                r = append_string_option(m, "pid", s->pid);
        if (r >= 0)
                r = append_string_option(m, "ipc", s->ipc);
        if (r >= 0)
                r = append_string_option(m, "uts", s->uts);
        if (r >= 0)
                r = append_string_option(m, "cgroupns", s->cgroupns);
        if (r >= 0)
                r = append_list_option(m, "cap_add", f->cap_add);
        if (r >= 0)
                r = append_list_option(m, "cap_drop", f->cap_drop);
        if (r >= 0)
                r = append_volume_fds(m, s->volumes);
        if (r >= 0)
                r = append_list_option(m, "mounts", f->mounts);
        if (r >= 0)
                r = append_list_option(m, "devices", f->devices);
        if (r >= 0)
                r = append_list_option(m, "ulimits", f->ulimits);
        if (r >= 0)
                r = append_list_option(m, "group_add", f->group_add);
        if (r >= 0)
                r = append_secrets(m, s->secrets);
        if (r >= 0)
                r = append_string_option(m, "runtime", f->runtime);
        if (r >= 0)
                r = append_strv_option(m, "runtime_args", s->runtime_args);
        if (r >= 0 && f->no_hostname)
                r = sd_bus_message_append(m, "{sv}", "no_hostname", "b", 1);
        if (r >= 0 && f->no_pivot)
                r = sd_bus_message_append(m, "{sv}", "no_pivot", "b", 1);
        if (r >= 0)
                r = append_string_option(m, "userns", f->userns);
        if (r >= 0)
                r = append_string_option(m, "shm_size", f->shm_size);
        if (r >= 0)
                r = append_string_option(m, "seccomp_profile", f->seccomp_profile);
        if (r >= 0 && f->no_new_privileges >= 0)
                r = sd_bus_message_append(m, "{sv}", "no_new_privileges", "b", f->no_new_privileges);
        if (r >= 0 && s->timeout_usec > 0)
                r = sd_bus_message_append(m, "{sv}", "timeout", "t", s->timeout_usec);
        if (r >= 0 && s->has_pids_limit)
                r = sd_bus_message_append(m, "{sv}", "pids_limit", "x", s->pids_limit);
        if (r >= 0 && s->has_memory)
                r = sd_bus_message_append(m, "{sv}", "memory", "t", s->memory);
        if (r >= 0 && s->cpu_weight > 0)
                r = sd_bus_message_append(m, "{sv}", "cpu_weight", "t", s->cpu_weight);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* ---- waiting: the event loop ---- */

typedef struct {
        sd_bus *bus;
        sd_event *event;
        bool terminal;
        char *process_path; /* once Start has answered */
        sd_bus_slot *start_slot;
        sd_bus_slot *wait_slot;
        bool resize_pending; /* SIGWINCH before the process existed */
        int pending_signal;  /* a signal to pass on once the process exists */
        int exit_status;     /* Wait's answer, -1 until then */
        int interrupted_by;  /* a second signal before the process existed: we leave */
        bool failed;         /* kiln's own failure, already reported */
} RunState;

static void finish(RunState *st)
{
        (void)sd_event_exit(st->event, 0);
}

static void fail(RunState *st)
{
        st->failed = true;
        finish(st);
}

static int on_reply_ignored(sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *ret_error)
{
        RunState *st = userdata;
        const sd_bus_error *error = sd_bus_message_get_error(reply);

        /* A Kill or Resize that loses the race with the exit ("not running") is no news to the user. */
        if (error && st->exit_status < 0 && !sd_bus_error_has_name(error, KILN_ERROR_NOT_FOUND))
                kiln_bus_log_error(error, sd_bus_message_get_errno(reply), sd_bus_message_get_member(reply));
        return 0;
}

static void process_call(RunState *st, const char *member, const char *types, ...)
{
        g_autoptr(sd_bus_message) m = NULL;
        va_list ap;
        int r;

        r = kiln_bus_new_call(st->bus, st->process_path, KILN_PROCESS_INTERFACE, member, &m);
        if (r < 0)
                return;
        va_start(ap, types);
        r = sd_bus_message_appendv(m, types, ap);
        va_end(ap);
        if (r >= 0)
                r = sd_bus_call_async(st->bus, NULL, m, on_reply_ignored, st, 0);
        if (r < 0)
                kiln_bus_log_error(NULL, r, member);
}

static void send_resize(RunState *st)
{
        guint16 rows, cols;

        if (terminal_size(&rows, &cols))
                process_call(st, "Resize", "qq", rows, cols);
}

static int on_signal(G_GNUC_UNUSED sd_event_source *source, const struct signalfd_siginfo *si,
                     void *userdata)
{
        RunState *st = userdata;
        int signo = (int)si->ssi_signo;

        if (signo == SIGWINCH) {
                if (st->process_path)
                        send_resize(st);
                else
                        st->resize_pending = true;
                return 0;
        }
        if (!st->process_path) {
                /* Start has not answered: the command may already run (its output can come before
                 * the answer), or Start may wait for a password dialog. The first signal is passed
                 * on once the process exists; a second one leaves at once, and our connection
                 * closing makes kilnd cancel the start, or kill what it started. */
                if (st->pending_signal == 0) {
                        st->pending_signal = signo;
                        return 0;
                }
                st->interrupted_by = signo;
                finish(st);
                return 0;
        }
        process_call(st, "Kill", "s", sigabbrev_np(signo));
        return 0;
}

static int on_wait_reply(sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *ret_error)
{
        RunState *st = userdata;
        const sd_bus_error *error = sd_bus_message_get_error(reply);
        int32_t status;
        int r;

        st->wait_slot = sd_bus_slot_unref(st->wait_slot);
        if (error) {
                kiln_bus_log_error(error, sd_bus_message_get_errno(reply), "Wait");
                fail(st);
                return 0;
        }
        r = sd_bus_message_read(reply, "i", &status);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                fail(st);
                return 0;
        }
        st->exit_status = status;
        finish(st);
        return 0;
}

static int on_start_reply(sd_bus_message *reply, void *userdata, G_GNUC_UNUSED sd_bus_error *ret_error)
{
        RunState *st = userdata;
        const sd_bus_error *error = sd_bus_message_get_error(reply);
        g_autoptr(sd_bus_message) m = NULL;
        const char *path;
        int r;

        st->start_slot = sd_bus_slot_unref(st->start_slot);
        if (error) {
                kiln_bus_log_error(error, sd_bus_message_get_errno(reply), "Start");
                fail(st);
                return 0;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                kiln_bus_log_parse_error(r);
                fail(st);
                return 0;
        }
        st->process_path = g_strdup(path);

        if (st->terminal)
                make_terminal_raw();
        if (st->resize_pending)
                send_resize(st);
        if (st->pending_signal)
                process_call(st, "Kill", "s", sigabbrev_np(st->pending_signal));

        r = kiln_bus_new_call(st->bus, st->process_path, KILN_PROCESS_INTERFACE, "Wait", &m);
        if (r < 0) {
                fail(st);
                return 0;
        }
        r = sd_bus_call_async(st->bus, &st->wait_slot, m, on_wait_reply, st, TIMEOUT_INFINITE_USEC);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "Wait");
                fail(st);
        }
        return 0;
}

/* Sends Start and runs the loop until the process has exited, or kiln fails or is interrupted. */
static void run_loop(RunState *st, sd_bus_message *start)
{
        static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
        g_autoptr(sd_event) event = NULL;
        sigset_t mask;
        int r;

        r = sd_event_default(&event);
        if (r < 0) {
                kiln_log("cannot create an event loop: %s", g_strerror(-r));
                st->failed = true;
                return;
        }
        st->event = event;

        /* sd-event takes signals through a signalfd: they must be blocked first. */
        sigemptyset(&mask);
        for (size_t i = 0; i < G_N_ELEMENTS(forwarded); i++)
                sigaddset(&mask, forwarded[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                kiln_log("cannot block signals: %s", g_strerror(errno));
                st->failed = true;
                return;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(forwarded); i++) {
                if (forwarded[i] == SIGWINCH && !st->terminal)
                        continue;
                r = sd_event_add_signal(event, NULL, forwarded[i], on_signal, st);
                if (r < 0) {
                        kiln_log("cannot watch signal %s: %s", sigabbrev_np(forwarded[i]), g_strerror(-r));
                        st->failed = true;
                        return;
                }
        }

        r = sd_bus_attach_event(st->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_call_async(st->bus, &st->start_slot, start, on_start_reply, st,
                                      KILN_TIMEOUT_INTERACTIVE_USEC);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "Start");
                st->failed = true;
        } else {
                r = sd_event_loop(event);
                if (r < 0) {
                        kiln_log("event loop failed: %s", g_strerror(-r));
                        st->failed = true;
                }
        }

        st->start_slot = sd_bus_slot_unref(st->start_slot);
        st->wait_slot = sd_bus_slot_unref(st->wait_slot);
        (void)sd_bus_detach_event(st->bus);
        st->event = NULL;
}

/* The command's status as kiln's exit status. */
static int exit_code(int status, GArray *valid)
{
        if (status < 0 || status > 255) {
                kiln_log("the command ended with an unexpected status %d", status);
                return KILN_EXIT_FAILURE;
        }
        if (valid->len == 0)
                return status;
        for (guint i = 0; i < valid->len; i++)
                if (g_array_index(valid, int, i) == status)
                        return KILN_EXIT_SUCCESS;
        if (status == 0) {
                kiln_log("the command exited with status 0, which is not in --valid-exit-codes");
                return 1;
        }
        return status;
}

int kiln_verb_run(int argc, char **argv)
{
        g_auto(RunFlags) f = {.no_new_privileges = -1};
        g_auto(StartOptions) s = {0};
        g_autoptr(GArray) valid = NULL;
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_message) m = NULL;
        g_autofree char *builder = NULL, *path = NULL;
        g_auto(GStrv) command = NULL;
        RunState st = {.exit_status = -1};
        gint64 started;
        int r;

        if (!parse_command_line(&f, argc, argv, &builder, &command))
                return KILN_EXIT_FAILURE;
        if (f.timeout && !parse_duration(f.timeout, &s.timeout_usec))
                return kiln_usage_error(
                        "run", "--timeout: '%s' is not a positive duration (seconds, or like 1m30s)",
                        f.timeout);
        if (!parse_valid_exit_codes(f.valid_exit_codes, &valid) || !parse_resources(&f, &s))
                return KILN_EXIT_FAILURE;
        s.env = resolve_env(f.env);
        s.pid = namespace_value(f.pid);
        s.ipc = namespace_value(f.ipc);
        s.uts = namespace_value(f.uts);
        s.cgroupns = namespace_value(f.cgroupns);
        if (f.runtime_flags) {
                /* As buildah: each --runtime-flag is a global flag of the runtime, named without "--". */
                s.runtime_args = g_new0(char *, f.runtime_flags->len + 1);
                for (guint i = 0; i < f.runtime_flags->len; i++)
                        s.runtime_args[i] =
                                g_strconcat("--", (char *)g_ptr_array_index(f.runtime_flags, i), NULL);
        }
        if (!open_volumes(f.volumes, &s.volumes) || !open_secrets(f.secrets, &s.secrets))
                return KILN_EXIT_FAILURE;

        r = kiln_bus_open_builder(builder, &bus, &path);
        if (r < 0)
                return KILN_EXIT_FAILURE;

        r = kiln_bus_new_call(bus, path, KILN_BUILDER_INTERFACE, "Start", &m);
        if (r < 0)
                return KILN_EXIT_FAILURE;
        r = sd_bus_message_append_strv(m, command);
        if (r >= 0)
                r = build_start_options(m, &f, &s);
        if (r < 0) {
                kiln_bus_log_error(NULL, r, "Start");
                return KILN_EXIT_FAILURE;
        }

        st.bus = bus;
        st.terminal = f.terminal;
        started = g_get_monotonic_time();
        run_loop(&st, m);
        restore_terminal();
        g_free(st.process_path);

        if (st.failed)
                return KILN_EXIT_FAILURE;
        if (st.interrupted_by)
                return 128 + st.interrupted_by;
        if (s.timeout_usec > 0 && st.exit_status > 128 &&
            (guint64)(g_get_monotonic_time() - started) >= s.timeout_usec)
                kiln_log("the command was killed: it ran longer than --timeout %s", f.timeout);
        return exit_code(st.exit_status, valid);
}
