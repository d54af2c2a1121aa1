/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "bus/bus-args.h"
#include "base/cgroup.h"
#include "base/passwd.h"
#include "base/size.h"
#include "run/run-options.h"
#include "spec/spec.h"
#include "base/validate.h"
#include "run/network.h"

typedef enum {
        OPT_FD,         /* h: duplicated, owned */
        OPT_BOOL,       /* b */
        OPT_TRIBOOL,    /* b, remembering whether it was given */
        OPT_STRING,     /* s */
        OPT_STRV,       /* as */
        OPT_USEC,       /* t */
        OPT_SIZE,       /* (qq) */
        OPT_VOLUME_FDS, /* a(hss) */
        OPT_SECRETS,    /* a{sh}: run parity */
        OPT_INT64,      /* x */
        OPT_UINT64,     /* t */
} OptionType;

typedef struct {
        const char *key;
        OptionType type;
        size_t offset;
        KilnStringCheck check; /* strings and array elements */
} RunOption;

#define AT(o, opt, T) ((T *)((char *)(o) + (opt)->offset))

static gboolean validate_dir(const char *arg, const char *value, GError **error)
{
        return kiln_validate_absolute_path(arg, value, TRUE, error);
}

static gboolean validate_namespace(const char *arg, const char *value, GError **error)
{
        KilnNamespace ns;

        return kiln_namespace_parse(arg, value, FALSE, &ns, error);
}

static gboolean validate_size(const char *arg, const char *value, GError **error)
{
        guint64 n;

        if (!*value)
                return TRUE;
        if (!kiln_parse_size(value, &n) || n == 0) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid %s: '%s' is not a size such as 64m", arg, value);
                return FALSE;
        }
        return TRUE;
}

/* A runtime is a name kilnd looks up, or an absolute path (which needs run-privileged unless
 * kiln.conf names it). */
static gboolean validate_runtime(const char *arg, const char *value, GError **error)
{
        if (!*value || g_path_is_absolute(value))
                return kiln_validate_absolute_path(arg, *value ? value : "/", FALSE, error);
        return kiln_validate_name(arg, value, error);
}

/* "default", "unconfined", or a profile name installed under the data dir: never a path. */
static gboolean validate_seccomp_profile(const char *arg, const char *value, GError **error)
{
        return !*value || kiln_validate_name(arg, value, error);
}

KILN_DEFINE_STRING_CHECK(check_env, kiln_validate_env_entry)
KILN_DEFINE_STRING_CHECK(check_user, kiln_validate_user_spec)
KILN_DEFINE_STRING_CHECK(check_dir, validate_dir)
KILN_DEFINE_STRING_CHECK(check_hostname, kiln_validate_hostname)
KILN_DEFINE_STRING_CHECK(check_isolation, kiln_validate_isolation)
KILN_DEFINE_STRING_CHECK(check_userns, kiln_validate_userns)
KILN_DEFINE_STRING_CHECK(check_namespace, validate_namespace)
KILN_DEFINE_STRING_CHECK(check_network, kiln_network_validate_mode)
KILN_DEFINE_STRING_CHECK(check_network_option, kiln_network_validate_option)
KILN_DEFINE_STRING_CHECK(check_dns, kiln_network_validate_dns)
KILN_DEFINE_STRING_CHECK(check_dns_search, kiln_network_validate_dns_search)
KILN_DEFINE_STRING_CHECK(check_dns_option, kiln_network_validate_dns_option)
KILN_DEFINE_STRING_CHECK(check_add_host, kiln_network_validate_add_host)
KILN_DEFINE_STRING_CHECK(check_volume, kiln_validate_volume)
KILN_DEFINE_STRING_CHECK(check_device, kiln_run_device_validate) /* run-devices.h */
KILN_DEFINE_STRING_CHECK(check_ulimit, kiln_validate_ulimit)
KILN_DEFINE_STRING_CHECK(check_size, validate_size)
KILN_DEFINE_STRING_CHECK(check_runtime, validate_runtime)
KILN_DEFINE_STRING_CHECK(check_seccomp_profile, validate_seccomp_profile)
KILN_DEFINE_STRING_CHECK(check_group_add, kiln_validate_group_add) /* run parity: groups */

static char *check_capability(const char *arg, const char *value, GError **error)
{
        char *normalized = NULL;

        return kiln_validate_capability(arg, value, &normalized, error) ? normalized : NULL;
}

/* ---- runtime_args (run parity: the runtime's log) ---- */
/* kilnd gives the runtime its --log and --log-format itself: it reads that log back for the runtime's
 * errors and relays the rest to the caller's stderr. A caller's own would either be overridden silently
 * or (coming last) send the log where kilnd never reads it, as root, to a path the caller chose: both are
 * refused, saying why. Everything else goes to the runtime as it is (run-privileged). */
static char *check_runtime_arg(const char *arg, const char *value, GError **error)
{
        static const char *const ours[] = {"--log", "--log-format", NULL};

        for (const char *const *o = ours; *o; o++) {
                size_t n = strlen(*o);
                if (strncmp(value, *o, n) == 0 && (value[n] == '\0' || value[n] == '=')) {
                        kiln_invalid(error, arg,
                                     "'%s' is kilnd's own: the runtime's log is read by kilnd and relayed "
                                     "to your stderr (use --debug for more of it)",
                                     *o);
                        return NULL;
                }
        }
        return g_strdup(value);
}

#define O(k, t, member, c)                                                                                  \
        {                                                                                                   \
                k, t, offsetof(KilnRunOptions, member), c                                                   \
        }
static const RunOption run_options[] = {
        O("stdin", OPT_FD, stdin_fd, NULL), O("stdout", OPT_FD, stdout_fd, NULL),
        O("stderr", OPT_FD, stderr_fd, NULL), O("terminal", OPT_BOOL, terminal, NULL),
        O("terminal_size", OPT_SIZE, rows, NULL), O("env", OPT_STRV, env, check_env),
        O("user", OPT_STRING, user, check_user), O("working_dir", OPT_STRING, working_dir, check_dir),
        O("hostname", OPT_STRING, hostname, check_hostname),
        O("isolation", OPT_STRING, isolation, check_isolation),
        O("userns", OPT_STRING, userns, check_userns), O("network", OPT_STRING, network, check_network),
        /* Network settings (network.h); a builder has them too, the run's win. */
        O("network_options", OPT_STRV, network_options, check_network_option),
        O("dns", OPT_STRV, dns, check_dns), O("dns_search", OPT_STRV, dns_search, check_dns_search),
        O("dns_option", OPT_STRV, dns_option, check_dns_option),
        O("add_host", OPT_STRV, add_host, check_add_host), O("pid", OPT_STRING, pid, check_namespace),
        O("ipc", OPT_STRING, ipc, check_namespace), O("uts", OPT_STRING, uts, check_namespace),
        O("cgroupns", OPT_STRING, cgroupns, check_namespace),
        O("cap_add", OPT_STRV, cap_add, check_capability),
        O("cap_drop", OPT_STRV, cap_drop, check_capability), O("volumes", OPT_STRV, volumes, check_volume),
        O("volume_fds", OPT_VOLUME_FDS, volume_fds, NULL),
        O("mounts", OPT_STRV, mounts, NULL), /* parsed once, when the run is resolved (run-volumes.h) */
        O("devices", OPT_STRV, devices, check_device), O("ulimits", OPT_STRV, ulimits, check_ulimit),
        O("shm_size", OPT_STRING, shm_size, check_size), O("runtime", OPT_STRING, runtime, check_runtime),
        O("runtime_args", OPT_STRV, runtime_args, check_runtime_arg),
        O("no_hosts", OPT_TRIBOOL, no_hosts, NULL), O("no_hostname", OPT_BOOL, no_hostname, NULL),
        O("no_pivot", OPT_BOOL, no_pivot, NULL),
        O("no_new_privileges", OPT_TRIBOOL, no_new_privileges, NULL),
        O("seccomp_profile", OPT_STRING, seccomp_profile, check_seccomp_profile),
        O("timeout", OPT_USEC, timeout_usec, NULL), O("detach", OPT_BOOL, detach, NULL),
        O("pids_limit", OPT_INT64, pids_limit, NULL), O("memory", OPT_UINT64, memory, NULL),
        O("cpu_weight", OPT_UINT64, cpu_weight, NULL),
        O("group_add", OPT_STRV, group_add, check_group_add), /* run parity: supplementary groups */
        O("secrets", OPT_SECRETS, secrets, NULL),             /* run parity: type=secret's bytes */
};
#undef O

static const char *const option_signatures[] = {
        [OPT_FD] = "h",          [OPT_BOOL] = "b",  [OPT_TRIBOOL] = "b", [OPT_STRING] = "s",
        [OPT_STRV] = "as",       [OPT_USEC] = "t",  [OPT_SIZE] = "(qq)", [OPT_VOLUME_FDS] = "a(hss)",
        [OPT_SECRETS] = "a{sh}", [OPT_INT64] = "x", [OPT_UINT64] = "t",
};

void kiln_run_options_init(KilnRunOptions *o)
{
        memset(o, 0, sizeof(*o));
        o->stdin_fd = o->stdout_fd = o->stderr_fd = -1;
        o->no_new_privileges = -1;
        o->no_hosts = -1;
        o->pids_limit = KILN_PIDS_LIMIT_UNSET;
        o->memory = KILN_MEMORY_UNSET;
}

static void volume_fd_clear(gpointer data)
{
        KilnVolumeFd *v = data;

        kiln_close_fdp(&v->fd);
        g_free(v->destination);
        g_free(v->options);
}

void kiln_run_options_clear(KilnRunOptions *o)
{
        for (size_t i = 0; i < G_N_ELEMENTS(run_options); i++) {
                const RunOption *opt = &run_options[i];
                switch (opt->type) {
                case OPT_FD:
                        kiln_close_fdp(AT(o, opt, int));
                        break;
                case OPT_STRING:
                        g_clear_pointer(AT(o, opt, char *), g_free);
                        break;
                case OPT_STRV:
                        g_clear_pointer(AT(o, opt, char **), g_strfreev);
                        break;
                case OPT_VOLUME_FDS:
                case OPT_SECRETS:
                        g_clear_pointer(AT(o, opt, GArray *), g_array_unref);
                        break;
                default:
                        break;
                }
        }
        g_clear_pointer(&o->resolved_volumes, g_ptr_array_unref);
        g_clear_pointer(&o->resolved_devices, kiln_run_devices_free);
        g_clear_pointer(&o->resolved_group_add, g_strfreev);
        g_clear_pointer(&o->resolved_group_args, g_strfreev);
        g_clear_pointer(&o->caller_groups, g_array_unref);
        kiln_run_options_init(o);
}

/* The message owns its descriptors; the run keeps duplicates for as long as it needs them. */
static gboolean dup_fd(int fd, const char *arg, int *ret, GError **error)
{
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

        if (copy < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot take %s: %s", arg,
                            g_strerror(errno));
                return FALSE;
        }
        kiln_close_fdp(ret);
        *ret = copy;
        return TRUE;
}

static gboolean read_volume_fds(sd_bus_message *m, const KilnConfig *limits, GArray **ret, GError **error)
{
        g_autoptr(GArray) volumes = g_array_new(FALSE, TRUE, sizeof(KilnVolumeFd));
        int r;

        g_array_set_clear_func(volumes, volume_fd_clear);
        r = sd_bus_message_enter_container(m, 'a', "(hss)");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', "hss")) > 0) {
                g_autofree char *arg = g_strdup_printf("volume_fds[%u]", volumes->len);
                g_autofree char *spec = NULL;
                KilnVolumeFd v = {.fd = -1};
                const char *dst, *opts;
                int fd;

                if (!kiln_check_array_limit("volume_fds", volumes->len + 1, limits, error))
                        return FALSE;
                r = sd_bus_message_read(m, "hss", &fd, &dst, &opts);
                if (r < 0)
                        break;
                /* The same rules as a path volume, with a placeholder for the source. */
                spec = *opts ? g_strdup_printf("/fd:%s:%s", dst, opts) : g_strdup_printf("/fd:%s", dst);
                if (!kiln_check_string_limit(arg, dst, limits, error) ||
                    !kiln_check_string_limit(arg, opts, limits, error) ||
                    !kiln_validate_volume(arg, spec, error))
                        return FALSE;
                if (!dup_fd(fd, arg, &v.fd, error))
                        return FALSE;
                v.destination = g_strdup(dst);
                v.options = g_strdup(opts);
                g_array_append_val(volumes, v);
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, "volume_fds", error);
        *ret = g_steal_pointer(&volumes);
        return TRUE;
}

/* ---- run parity: secrets ---- */

static void secret_fd_clear(gpointer data)
{
        KilnSecretFd *s = data;

        kiln_close_fdp(&s->fd);
        g_free(s->id);
}

/* A secret must be a memfd sealed against writing, growing and shrinking: its bytes are read when the
 * run is prepared, and the caller can no longer change them after this check; reading it never waits
 * (a pipe could). */
static gboolean check_secret_fd(const char *arg, int fd, GError **error)
{
        int seals = fcntl(fd, F_GET_SEALS);
        const int needed = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
        struct stat st;

        if (seals < 0 || (seals & needed) != needed || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return kiln_invalid(error, arg,
                                    "not a memfd sealed with F_SEAL_WRITE, F_SEAL_GROW and F_SEAL_SHRINK");
        if (st.st_size > KILN_SECRET_MAX)
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED, "Invalid %s: larger than %d bytes",
                                 arg, KILN_SECRET_MAX);
        return TRUE;
}

static gboolean read_secrets(sd_bus_message *m, const KilnConfig *limits, GArray **ret, GError **error)
{
        g_autoptr(GArray) secrets = g_array_new(FALSE, TRUE, sizeof(KilnSecretFd));
        int r;

        g_array_set_clear_func(secrets, secret_fd_clear);
        r = sd_bus_message_enter_container(m, 'a', "{sh}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sh")) > 0) {
                KilnSecretFd s = {.fd = -1};
                g_autofree char *arg = NULL;
                const char *id;
                int fd;

                if (!kiln_check_array_limit("secrets", secrets->len + 1, limits, error))
                        return FALSE;
                r = sd_bus_message_read(m, "sh", &id, &fd);
                if (r < 0)
                        break;
                arg = g_strdup_printf("secrets[%.64s]", id);
                if (!kiln_validate_name(arg, id, error) || !check_secret_fd(arg, fd, error))
                        return FALSE;
                for (guint i = 0; i < secrets->len; i++)
                        if (g_str_equal(g_array_index(secrets, KilnSecretFd, i).id, id))
                                return kiln_invalid(error, arg, "given twice");
                if (!dup_fd(fd, arg, &s.fd, error))
                        return FALSE;
                s.id = g_strdup(id);
                g_array_append_val(secrets, s);
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, "secrets", error);
        *ret = g_steal_pointer(&secrets);
        return TRUE;
}

static gboolean read_option(KilnRunOptions *o, const RunOption *opt, sd_bus_message *m,
                            const KilnConfig *limits, GError **error)
{
        int r = 0, b, fd;
        guint16 rows, cols;

        if (!kiln_bus_enter_variant(m, opt->key, option_signatures[opt->type], error))
                return FALSE;
        switch (opt->type) {
        case OPT_FD:
                r = sd_bus_message_read_basic(m, 'h', &fd);
                if (r >= 0 && !dup_fd(fd, opt->key, AT(o, opt, int), error))
                        return FALSE;
                break;
        case OPT_BOOL:
        case OPT_TRIBOOL:
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r >= 0)
                        *AT(o, opt, int) = !!b;
                break;
        case OPT_STRING: {
                char *s = NULL;
                if (!kiln_bus_read_string(m, opt->key, opt->check, limits, &s, error))
                        return FALSE;
                g_free(*AT(o, opt, char *));
                *AT(o, opt, char *) = s;
                break;
        }
        case OPT_STRV: {
                char **v = NULL;
                if (!kiln_bus_read_strv(m, opt->key, opt->check, limits, &v, error))
                        return FALSE;
                g_strfreev(*AT(o, opt, char **));
                *AT(o, opt, char **) = v;
                break;
        }
        case OPT_USEC:
        case OPT_UINT64:
                r = sd_bus_message_read_basic(m, 't', AT(o, opt, guint64));
                break;
        case OPT_INT64:
                r = sd_bus_message_read_basic(m, 'x', AT(o, opt, gint64));
                break;
        case OPT_SIZE:
                r = sd_bus_message_read(m, "(qq)", &rows, &cols);
                if (r >= 0) {
                        o->rows = rows;
                        o->cols = cols;
                }
                break;
        case OPT_SECRETS: {
                GArray *v = NULL;
                if (!read_secrets(m, limits, &v, error))
                        return FALSE;
                g_clear_pointer(AT(o, opt, GArray *), g_array_unref);
                *AT(o, opt, GArray *) = v;
                break;
        }
        case OPT_VOLUME_FDS: {
                GArray *v = NULL;
                if (!read_volume_fds(m, limits, &v, error))
                        return FALSE;
                g_clear_pointer(AT(o, opt, GArray *), g_array_unref);
                *AT(o, opt, GArray *) = v;
                break;
        }
        }
        if (r < 0)
                return kiln_bus_read_failed(r, opt->key, error);
        return kiln_bus_exit_variant(m, opt->key, error);
}

gboolean kiln_run_options_read(KilnRunOptions *o, sd_bus_message *m, const KilnConfig *limits,
                               GError **error)
{
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const RunOption *opt = NULL;
                const char *key;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        break;
                if (!kiln_check_array_limit("options", ++n, limits, error))
                        return FALSE;
                for (size_t i = 0; i < G_N_ELEMENTS(run_options) && !opt; i++)
                        if (g_str_equal(run_options[i].key, key))
                                opt = &run_options[i];
                if (!opt) {
                        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                    "Invalid options: unknown key '%.64s'", key);
                        return FALSE;
                }
                if (!read_option(o, opt, m, limits, error))
                        return FALSE;
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, "options", error);
        if (o->terminal && (o->rows == 0) != (o->cols == 0)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid terminal_size: rows and columns must both be set");
                return FALSE;
        }
        if (o->cpu_weight > KILN_CPU_WEIGHT_MAX) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid cpu_weight: %" G_GUINT64_FORMAT " is not between 1 and %d",
                            o->cpu_weight, KILN_CPU_WEIGHT_MAX);
                return FALSE;
        }
        return TRUE;
}
